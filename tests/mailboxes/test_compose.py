"""The compose page: reply, reply all, forward and record-page send through the active mailbox's
SMTP server (aiosmtpd), the "who will see it" note, failures shown in words with the draft kept."""

from __future__ import annotations

from email import message_from_bytes

import pytest
from django.urls import reverse

from mailboxes.models import AddressRole, Message, MessageOrigin, SendState
from tests.conftest import Team
from tests.mailboxes.factories import MailboxFactory, MessageFactory
from tests.mailboxes.test_sending import OWN_ADDRESS, use_smtp
from tests.peers.smtp import SmtpServer
from tests.records.factories import CandidateFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(team: Team, smtp_server: SmtpServer, send_settings):  # type: ignore[no-untyped-def]
    mailbox = MailboxFactory(owner=team.owner, email_address=OWN_ADDRESS)
    use_smtp(mailbox, smtp_server, send_settings)
    mailbox.save()
    candidate = CandidateFactory(
        organization=team.organization,
        owner=team.owner,
        first_name="Taro",
        last_name="Yamada",
        addresses=["taro@example.jp"],
    )
    parent = MessageFactory(
        owner=team.owner,
        mailbox=mailbox,
        subject="Interview",
        message_id="first@example.jp",
        records=[candidate],
    )
    return mailbox, candidate, parent


def test_reply_is_prefilled_says_who_sees_it_and_is_received_threaded(
    team: Team, smtp_server: SmtpServer, setup
) -> None:  # type: ignore[no-untyped-def]
    mailbox, candidate, parent = setup
    client = team.client_for(team.owner)
    url = reverse("mail:compose") + f"?reply={parent.pk}"
    page = client.get(url)
    form = page.context["form"]
    assert form.initial["to"] == "taro@example.jp" and form.initial["subject"] == "Re: Interview"
    assert "visible to everyone who can see Taro Yamada" in page.content.decode()
    response = client.post(
        url,
        {
            "to": "taro@example.jp",
            "subject": "Re: Interview",
            "body": "Thursday works.",
            "parent_reply": parent.pk,
        },
    )
    sent = Message.objects.get(origin=MessageOrigin.HUB)
    assert response.status_code == 302 and response["Location"] == reverse(
        "mail:message", args=[sent.pk]
    )
    assert sent.send_state == SendState.SENT
    (received,) = smtp_server.messages
    headers = message_from_bytes(received.raw)
    assert headers["In-Reply-To"] == "<first@example.jp>"
    assert "<first@example.jp>" in headers["References"]
    assert (
        Message.objects.visible_to(team.teammate).filter(pk=sent.pk).exists()
    )  # follows the record
    assert sent.thread_id == parent.thread_id or parent.thread_id is None


def test_send_mail_from_a_record_page(team: Team, smtp_server: SmtpServer, setup) -> None:  # type: ignore[no-untyped-def]
    _, candidate, _ = setup
    client = team.client_for(team.owner)
    record_page = client.get(candidate.get_absolute_url()).content.decode()
    assert f"{reverse('mail:compose')}?record={candidate.pk}" in record_page
    page = client.get(reverse("mail:compose"), {"record": candidate.pk})
    assert page.context["form"].initial["to"] == "taro@example.jp"
    client.post(
        reverse("mail:compose"),
        {
            "to": "taro@example.jp",
            "subject": "Offer",
            "body": "Good news",
            "records": [candidate.pk],
        },
    )
    sent = Message.objects.get(origin=MessageOrigin.HUB)
    assert list(sent.records.values_list("pk", flat=True)) == [candidate.pk]
    assert len(smtp_server.messages) == 1


def test_failure_is_shown_in_words_and_the_draft_is_kept(
    team: Team, smtp_server: SmtpServer, setup, send_settings
) -> None:  # type: ignore[no-untyped-def]
    mailbox, _, _ = setup
    use_smtp(mailbox, smtp_server, send_settings, password="wrong-password")
    mailbox.save()
    client = team.client_for(team.owner)
    data = {"to": "taro@example.jp", "subject": "Keep me", "body": "Typed with care"}
    page = client.post(reverse("mail:compose"), data)
    body = page.content.decode()
    assert page.status_code == 200 and "Not sent:" in body and "draft is kept" in body
    assert "Typed with care" in body and "wrong-password" not in body
    draft = Message.objects.get(origin=MessageOrigin.HUB)
    assert draft.send_state == SendState.FAILED and smtp_server.messages == []
    use_smtp(mailbox, smtp_server, send_settings)
    mailbox.save()
    again = client.post(
        reverse("mail:compose"), {**data, "draft": page.context["form"].data["draft"]}
    )
    assert again.status_code == 302
    assert (
        Message.objects.filter(origin=MessageOrigin.HUB).count() == 1
    )  # the failed draft was replaced
    assert len(smtp_server.messages) == 1


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"to": "", "subject": "x"}, "to"),
        ({"to": "not an address", "subject": "x"}, "to"),
        ({"to": "taro@example.jp", "subject": "Hi\r\nBcc: victim@example.com"}, "subject"),
        ({"to": "taro@example.jp\nBcc: victim@example.com", "subject": "x"}, "to"),
        # CR or LF smuggled into a name, into Cc and Bcc, or as a Unicode line separator.
        ({"to": '"Taro\rBcc: victim@example.com" <taro@example.jp>', "subject": "x"}, "to"),
        ({"to": "Taro\r\nBcc: victim@example.com <taro@example.jp>", "subject": "x"}, "to"),
        (
            {
                "to": "taro@example.jp",
                "cc": "hana@example.jp\r\nBcc: v@example.com",
                "subject": "x",
            },
            "cc",
        ),
        ({"to": "taro@example.jp", "bcc": '"A\nB" <hana@example.jp>', "subject": "x"}, "bcc"),
        ({"to": "taro@example.jp", "subject": "Hi\u2028Bcc: victim@example.com"}, "subject"),
        ({"to": "taro@example.jp", "subject": "Hi\rX-Injected: yes"}, "subject"),
    ],
)
def test_bad_input_is_a_form_error_with_nothing_stored(
    team: Team, smtp_server: SmtpServer, setup, data, field
) -> None:  # type: ignore[no-untyped-def]
    page = team.client_for(team.owner).post(reverse("mail:compose"), {"body": "b", **data})
    assert page.status_code == 200
    assert field in page.context["form"].errors or page.context["form"].non_field_errors()
    assert not Message.objects.filter(origin=MessageOrigin.HUB).exists()
    assert smtp_server.messages == []


def test_foreign_or_hidden_parents_and_records_are_refused(team: Team, setup) -> None:  # type: ignore[no-untyped-def]
    _, _, parent = setup
    outsider = team.client_for(team.outsider)
    assert outsider.get(reverse("mail:compose"), {"reply": parent.pk}).status_code == 404
    assert (
        team.client_for(team.teammate)
        .get(reverse("mail:compose"), {"forward": parent.pk})
        .status_code
        == 404
    )
    assert (
        team.client_for(team.owner).get(reverse("mail:compose"), {"reply": "abc"}).status_code
        == 404
    )
    foreign = CandidateFactory(organization=team.other_organization, owner=team.outsider)
    assert (
        team.client_for(team.owner).get(reverse("mail:compose"), {"record": foreign.pk}).status_code
        == 404
    )
    page = team.client_for(team.owner).post(
        reverse("mail:compose"), {"to": "a@example.com", "records": [foreign.pk]}
    )
    assert "records" in page.context["form"].errors


def test_reply_to_domain_warning(team: Team, setup) -> None:  # type: ignore[no-untyped-def]
    mailbox, _, _ = setup
    phish = MessageFactory(
        owner=team.owner,
        mailbox=mailbox,
        addresses=[
            (AddressRole.FROM, "ceo@client.example"),
            (AddressRole.REPLY_TO, "ceo@evil.example"),
            (AddressRole.TO, OWN_ADDRESS),
        ],
    )
    page = (
        team.client_for(team.owner)
        .get(reverse("mail:compose"), {"reply": phish.pk})
        .content.decode()
    )
    assert "evil.example" in page and 'class="note" role="alert"' in page


def test_outgoing_server_test_button(
    team: Team, smtp_server: SmtpServer, setup, send_settings
) -> None:  # type: ignore[no-untyped-def]
    mailbox, _, _ = setup
    client = team.client_for(team.owner)
    ok = client.post(
        reverse("mailboxes:test_smtp", args=[mailbox.pk]), follow=True
    ).content.decode()
    assert "flash-success" in ok and smtp_server.messages == []
    use_smtp(mailbox, smtp_server, send_settings, password="nope-wrong")
    mailbox.save()
    bad = client.post(
        reverse("mailboxes:test_smtp", args=[mailbox.pk]), follow=True
    ).content.decode()
    assert "flash-error" in bad and "nope-wrong" not in bad
    assert (
        team.client_for(team.teammate)
        .post(reverse("mailboxes:test_smtp", args=[mailbox.pk]))
        .status_code
        == 404
    )
