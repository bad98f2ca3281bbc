"""Sending from the hub against a real aiosmtpd server: headers, envelope, failures, links."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection

from mailboxes.composing import MessageInvalid, OutgoingAttachment, reply_subject
from mailboxes.importer import mailbox_poll
from mailboxes.mailstore import content_hash, raw_read
from mailboxes.models import (
    Mailbox,
    Message,
    MessageAddress,
    MessageLink,
    MessageOrigin,
    SendState,
    ServerMessage,
    ServerMessageState,
    SystemSender,
    uid_digest,
)
from mailboxes.parsing import parse_message
from mailboxes.sending import (
    message_compose,
    message_send,
    notification_send,
    reply_recipients,
    reply_to_warning,
)
from mailboxes.smtp import test_smtp_connection
from mailboxes.storing import IncomingMessage, StoreOutcome, messages_store
from tests.conftest import Team
from tests.mailboxes.conftest import mailbox_for
from tests.mailboxes.factories import MailboxFactory
from tests.mailboxes.mail import make_message
from tests.peers.fixtures import Pop3Account
from tests.peers.ports import free_ports
from tests.peers.smtp import SmtpServer
from tests.records.factories import CandidateFactory, ClientFactory, ContactFactory

SmtpFactory = Callable[..., SmtpServer]
SettingsWrapper = Any  # pytest-django's settings fixture
OWN_ADDRESS = "owner@sakura.example"


def use_smtp(
    mailbox: Mailbox | SystemSender,
    server: SmtpServer,
    settings: SettingsWrapper,
    *,
    security: str = "starttls",
    password: str | None = None,
) -> None:
    """Point ``mailbox``'s outgoing settings at ``server`` (and trust the test CA)."""
    settings.MAIL_CA_FILE = str(server.ca_file)
    mailbox.smtp_host = server.host
    mailbox.smtp_port = server.port
    mailbox.smtp_security = security
    mailbox.smtp_username = server.username or ""
    if isinstance(mailbox, Mailbox):
        mailbox.smtp_same_credentials = False
    mailbox.set_smtp_password(password if password is not None else (server.password or ""))
    mailbox.save()


@pytest.fixture
def mailbox(team: Team, smtp_server: SmtpServer, send_settings: SettingsWrapper) -> Mailbox:
    box = MailboxFactory(owner=team.owner, email_address=OWN_ADDRESS)
    use_smtp(box, smtp_server, send_settings)
    return box


def compose(team: Team, mailbox: Mailbox, **fields: Any) -> Message:
    values: dict[str, Any] = {
        "to": ["Taro Yamada <taro@example.jp>"],
        "cc": [],
        "bcc": [],
        "subject": "Interview",
        "body_text": "Could you come on Tuesday?\n",
    }
    values.update(fields)
    return message_compose(sender=team.owner, mailbox=mailbox, **values)


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


# -- delivery --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_starttls_send_has_the_right_headers_and_bcc_only_in_the_envelope(
    team: Team, smtp_server: SmtpServer, mailbox: Mailbox
) -> None:
    org = team.organization
    candidate = CandidateFactory(organization=org, owner=team.owner, addresses=["taro@example.jp"])
    client = ClientFactory(organization=org, owner=team.owner)
    contact = ContactFactory(
        organization=org, owner=team.owner, company=client, addresses=["hana@acme.example"]
    )
    message = compose(
        team,
        mailbox,
        cc=["Hana Suzuki <HANA@Acme.example>"],
        bcc=["boss@sakura.example"],
    )
    assert message.send_state == SendState.DRAFT
    assert smtp_server.messages == []

    sent = message_send(message=message)

    assert (sent.send_state, sent.send_error) == (SendState.SENT, "")
    assert sent.sent_at is not None
    (received,) = smtp_server.messages
    assert received.mail_from == OWN_ADDRESS
    assert sorted(received.rcpt_tos) == [
        "boss@sakura.example",
        "hana@acme.example",
        "taro@example.jp",
    ]
    assert received.authenticated_as == smtp_server.username
    assert received.over_tls
    assert received.raw == raw_read(sent.raw.name)  # stored bytes are what went out
    head = header_block(received.raw)
    assert b"bcc" not in head.lower() and b"boss@sakura.example" not in received.raw
    parsed = parse_message(received.raw)
    assert parsed.sender is not None
    assert (parsed.sender.name, parsed.sender.address) == ("Olivia Owner", OWN_ADDRESS)
    assert [(p.name, p.address) for p in parsed.to] == [("Taro Yamada", "taro@example.jp")]
    assert [(p.name, p.address) for p in parsed.cc] == [("Hana Suzuki", "hana@acme.example")]
    assert parsed.bcc == []
    assert parsed.message_id == sent.message_id
    assert sent.message_id.endswith("@sakura.example")
    assert parsed.date is not None
    # The sender keeps the Bcc as a row of its own copy, not in the bytes.
    assert set(sent.addresses.values_list("role", "address")) == {
        ("from", OWN_ADDRESS),
        ("to", "taro@example.jp"),
        ("cc", "hana@acme.example"),
        ("bcc", "boss@sakura.example"),
    }
    # Linked to every record of the recipients (a contact's client too).
    assert set(sent.records.values_list("pk", flat=True)) == {candidate.pk, contact.pk, client.pk}
    assert (sent.origin, sent.owner_id, sent.mailbox_id) == (
        MessageOrigin.HUB,
        team.owner.pk,
        mailbox.pk,
    )


@pytest.mark.django_db
def test_reply_threads_quotes_and_inherits_the_parents_links(
    team: Team, smtp_server: SmtpServer, mailbox: Mailbox
) -> None:
    org = team.organization
    candidate = CandidateFactory(organization=org, owner=team.owner, addresses=["taro@example.jp"])
    other_record = ClientFactory(organization=org, owner=team.owner)
    parent_raw = make_message(
        subject="Re: Interview",
        message_id="<second@example.jp>",
        in_reply_to="<first@example.jp>",
        references="<root@example.jp> <first@example.jp>",
        body="Tuesday works.\n> earlier\n",
    )
    store(mailbox, parent_raw)
    parent = Message.objects.get(message_id="second@example.jp")
    MessageLink.objects.create(message=parent, record=other_record)

    reply = compose(team, mailbox, subject="", body_text="See you then.", in_reply_to=parent)
    sent = message_send(message=reply)

    assert sent.send_state == SendState.SENT
    assert sent.subject == "Re: Interview"  # not "Re: Re: Interview"
    parsed = parse_message(smtp_server.messages[0].raw)
    assert parsed.in_reply_to == "second@example.jp"
    assert parsed.references == ["root@example.jp", "first@example.jp", "second@example.jp"]
    assert (sent.in_reply_to, sent.references) == (
        "second@example.jp",
        "root@example.jp first@example.jp second@example.jp",
    )
    assert sent.thread_id == parent.thread_id
    assert set(sent.records.values_list("pk", flat=True)) == {candidate.pk, other_record.pk}
    assert parsed.text_body.startswith("See you then.\n\nOn 2026-11-20 09:30, Taro Yamada")
    assert "> Tuesday works.\n>> earlier" in parsed.text_body


def test_subject_prefixes_do_not_stack() -> None:
    assert reply_subject("Interview") == "Re: Interview"
    assert reply_subject("RE: Interview") == "RE: Interview"
    assert reply_subject("Re[2]: Interview") == "Re[2]: Interview"
    assert reply_subject("Fwd: CV") == "Re: Fwd: CV"


@pytest.mark.django_db
def test_japanese_subject_name_body_and_file_name_round_trip(
    team: Team, smtp_server: SmtpServer, mailbox: Mailbox
) -> None:
    team.owner.full_name = "山田 花子"
    team.owner.save()
    subject = "面接日程のご相談【至急】候補者：佐藤様（営業職）" * 2
    body = "佐藤様\n\nお世話になっております。来週火曜日はいかがでしょうか。\n"
    message = compose(
        team,
        mailbox,
        subject=subject,
        body_text=body,
        attachments=[OutgoingAttachment("履歴書.pdf", "application/pdf", b"%PDF-1.4 test")],
    )
    message_send(message=message)

    raw = smtp_server.messages[0].raw
    assert raw.isascii()  # encoded words and base64: no SMTPUTF8 or 8BITMIME needed
    parsed = parse_message(raw)
    assert parsed.subject == subject
    assert parsed.sender is not None and parsed.sender.name == "山田 花子"
    assert parsed.text_body.replace("\r\n", "\n") == body
    assert [(a.filename, a.payload) for a in parsed.attachments] == [
        ("履歴書.pdf", b"%PDF-1.4 test")
    ]
    assert message.has_attachments and message.attachments.get().filename == "履歴書.pdf"


@pytest.mark.django_db
def test_implicit_tls(
    team: Team, smtp_factory: SmtpFactory, send_settings: SettingsWrapper
) -> None:
    server = smtp_factory(security="implicit", username="sender@sakura.example", password="pw-1")
    box = MailboxFactory(owner=team.owner, email_address=OWN_ADDRESS)
    use_smtp(box, server, send_settings, security="ssl")
    sent = message_send(message=compose(team, box))
    assert sent.send_state == SendState.SENT
    assert server.messages[0].over_tls and server.messages[0].authenticated_as


# -- failures --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_wrong_password_fails_in_plain_words_keeps_the_draft_and_can_be_retried(
    team: Team,
    smtp_server: SmtpServer,
    mailbox: Mailbox,
    send_settings: SettingsWrapper,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng-Secret-pw!"
    use_smtp(mailbox, smtp_server, send_settings, password=wrong)
    message = compose(team, mailbox)

    failed = message_send(message=message)

    assert failed.send_state == SendState.FAILED
    assert "rejected the user name or password" in failed.send_error
    assert wrong not in failed.send_error and wrong not in caplog.text
    assert smtp_server.messages == []
    assert failed.sent_at is None and raw_read(failed.raw.name)
    use_smtp(mailbox, smtp_server, send_settings)  # the owner corrects the password
    assert message_send(message=failed).send_state == SendState.SENT
    assert len(smtp_server.messages) == 1


@pytest.mark.django_db
def test_server_down_fails(team: Team, mailbox: Mailbox) -> None:
    (closed_port,) = free_ports("127.0.0.1", 1)
    Mailbox.objects.filter(pk=mailbox.pk).update(smtp_port=closed_port)
    mailbox.refresh_from_db()
    failed = message_send(message=compose(team, mailbox))
    assert failed.send_state == SendState.FAILED
    assert "refused the connection" in failed.send_error


@pytest.mark.django_db
def test_silent_server_times_out_and_loopback_is_refused_unless_allowed(
    team: Team, mailbox: Mailbox, send_settings: SettingsWrapper
) -> None:
    send_settings.SMTP_TIMEOUT_SECONDS = 1
    with socket.socket() as silent:  # accepts connections (backlog) but never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        Mailbox.objects.filter(pk=mailbox.pk).update(smtp_port=silent.getsockname()[1])
        failed = message_send(message=compose(team, mailbox))
    assert failed.send_state == SendState.FAILED
    assert "did not answer in time" in failed.send_error
    send_settings.MAIL_HOSTS_ALLOW_LOOPBACK = False
    again = message_send(message=failed)
    assert again.send_state == SendState.FAILED
    assert "private, loopback or link-local" in again.send_error


@pytest.mark.django_db
def test_starttls_not_offered_sends_no_password(
    team: Team, smtp_factory: SmtpFactory, send_settings: SettingsWrapper
) -> None:
    server = smtp_factory(
        security="plain", username="s@sakura.example", password="pw", allow_auth_without_tls=True
    )
    box = MailboxFactory(owner=team.owner, email_address=OWN_ADDRESS)
    use_smtp(box, server, send_settings, security="starttls")
    failed = message_send(message=compose(team, box))
    assert failed.send_state == SendState.FAILED
    assert "does not offer STARTTLS" in failed.send_error
    assert server.auth_attempts == [] and server.messages == []


@pytest.mark.django_db
def test_self_signed_certificate_fails_unless_accepted(
    team: Team, smtp_factory: SmtpFactory, send_settings: SettingsWrapper
) -> None:
    server = smtp_factory(security="implicit", cert="self_signed", username="s@x.jp", password="p")
    box = MailboxFactory(owner=team.owner, email_address=OWN_ADDRESS)
    use_smtp(box, server, send_settings, security="ssl")
    failed = message_send(message=compose(team, box))
    assert failed.send_state == SendState.FAILED
    assert "self-signed" in failed.send_error
    Mailbox.objects.filter(pk=box.pk).update(accept_self_signed=True)
    assert message_send(message=failed).send_state == SendState.SENT


@pytest.mark.django_db
def test_every_recipient_refused_fails_naming_them(
    team: Team, smtp_server: SmtpServer, mailbox: Mailbox
) -> None:
    smtp_server.refused_recipients.update({"taro@example.jp", "hana@acme.example"})
    failed = message_send(message=compose(team, mailbox, cc=["hana@acme.example"]))
    assert failed.send_state == SendState.FAILED
    assert "refused these recipients: hana@acme.example, taro@example.jp" in failed.send_error
    assert smtp_server.messages == []


@pytest.mark.django_db
def test_some_recipients_refused_is_sent_with_a_warning(
    team: Team, smtp_server: SmtpServer, mailbox: Mailbox
) -> None:
    smtp_server.refused_recipients.add("nobody@example.jp")
    sent = message_send(message=compose(team, mailbox, cc=["nobody@example.jp"]))
    assert sent.send_state == SendState.SENT
    assert "refused these recipients: nobody@example.jp" in sent.send_error
    assert smtp_server.messages[0].rcpt_tos == ("taro@example.jp",)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fields",
    [
        {"subject": "Hello\r\nBcc: victim@evil.example"},
        {"subject": "Hello\nX-Injected: yes"},
        {"subject": "Hello\u2028Bcc: victim@evil.example"},
        {"to": ["taro@example.jp\r\nBcc: victim@evil.example"]},
        {"to": ["Taro\n <taro@example.jp>"]},
        {"cc": ["taro@example.jp, victim@evil.example"]},
        {"bcc": ["not an address"]},
        {"to": []},
    ],
)
def test_header_injection_and_bad_addresses_are_refused_before_anything_is_stored(
    team: Team, mailbox: Mailbox, send_settings: SettingsWrapper, fields: dict[str, object]
) -> None:
    with pytest.raises(MessageInvalid) as caught:
        compose(team, mailbox, **fields)
    assert set(caught.value.message_dict) <= {"subject", "to", "cc", "bcc"}
    assert Message.objects.count() == 0 and MessageAddress.objects.count() == 0
    assert not (Path(send_settings.MEDIA_ROOT) / "raw").exists()


@pytest.mark.django_db
def test_cannot_send_from_someone_elses_mailbox_or_answer_hidden_mail(
    team: Team, mailbox: Mailbox
) -> None:
    with pytest.raises(PermissionDenied):
        message_compose(
            sender=team.teammate,
            mailbox=mailbox,
            to=["taro@example.jp"],
            cc=[],
            bcc=[],
            subject="x",
            body_text="x",
        )
    store(mailbox, make_message(message_id="<private@example.jp>"))  # linked to no record
    private = Message.objects.get(message_id="private@example.jp")
    teammate_box = MailboxFactory(owner=team.teammate)
    with pytest.raises(PermissionDenied):
        message_compose(
            sender=team.teammate,
            mailbox=teammate_box,
            to=["taro@example.jp"],
            cc=[],
            bcc=[],
            subject="x",
            body_text="x",
            in_reply_to=private,
        )


# -- exactly once ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_sending_twice_delivers_once(team: Team, smtp_server: SmtpServer, mailbox: Mailbox) -> None:
    message = compose(team, mailbox)
    first = message_send(message=message)
    second = message_send(message=Message.objects.get(pk=message.pk))
    assert first.send_state == second.send_state == SendState.SENT
    assert len(smtp_server.messages) == 1


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_sends_deliver_once(
    team: Team, smtp_server: SmtpServer, mailbox: Mailbox
) -> None:
    message = compose(team, mailbox)
    start = threading.Barrier(2)
    states: list[str] = []

    def click() -> None:
        try:
            start.wait()
            states.append(message_send(message=Message.objects.get(pk=message.pk)).send_state)
        finally:
            connection.close()

    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(smtp_server.messages) == 1
    assert Message.objects.get(pk=message.pk).send_state == SendState.SENT
    assert SendState.SENT in states


# -- the copy that comes back over POP3 --------------------------------------------------------


def store(mailbox: Mailbox, raw: bytes, uid: str | None = None) -> StoreOutcome:
    uid = uid or content_hash(raw)[:20]
    incoming = IncomingMessage(
        uid=uid,
        uid_hash=uid_digest(uid),
        raw=raw,
        digest=content_hash(raw),
        parsed=parse_message(raw),
        size=len(raw),
    )
    return messages_store(mailbox=mailbox, batch=[incoming])


@pytest.mark.django_db
def test_the_sent_copy_handed_back_over_pop3_is_a_duplicate(
    team: Team, smtp_server: SmtpServer, mailbox: Mailbox
) -> None:
    sent = message_send(message=compose(team, mailbox))
    # Providers add their own trace headers to the copy they keep.
    copy = b"Received: from hub by mx.example; Tue, 1 Dec 2026 10:00:00 +0000\r\n"
    copy += smtp_server.messages[0].raw
    outcome = store(mailbox, copy, uid="sent-copy-1")
    assert (outcome.imported, outcome.duplicates) == (0, 1)
    assert Message.objects.count() == 1
    row = ServerMessage.objects.get(mailbox=mailbox, uid="sent-copy-1")
    assert (row.state, row.message_id) == (ServerMessageState.DUPLICATE, sent.pk)


@pytest.mark.django_db(transaction=True)
def test_the_sent_copy_polled_from_dovecot_is_not_imported_twice(
    team: Team,
    pop3_account: Pop3Account,
    smtp_server: SmtpServer,
    mail_settings: SettingsWrapper,
) -> None:
    box = mailbox_for(pop3_account, team.owner, email_address=OWN_ADDRESS)
    use_smtp(box, smtp_server, mail_settings)
    sent = message_send(message=compose(team, box))
    pop3_account.deliver(smtp_server.messages[0].raw)
    report = mailbox_poll(mailbox_id=box.pk)
    assert report is not None
    assert (report.imported, report.duplicates) == (0, 1)
    assert list(Message.objects.values_list("pk", flat=True)) == [sent.pk]


# -- notifications and helpers ------------------------------------------------------------------


@pytest.mark.django_db
def test_notification_goes_through_the_system_sender_and_follows_the_record(
    team: Team, smtp_server: SmtpServer, send_settings: SettingsWrapper
) -> None:
    system_sender = SystemSender(
        organization=team.organization, name="Sakura Agency", address="noreply@sakura.example"
    )
    use_smtp(system_sender, smtp_server, send_settings)
    candidate = CandidateFactory(
        organization=team.organization, owner=team.owner, addresses=["taro@example.jp"]
    )

    message = notification_send(
        organization=team.organization,
        record=candidate,
        subject="Your interview is confirmed",
        body_text="Tuesday 10:00.",
        to=["taro@example.jp"],
    )

    assert message.send_state == SendState.SENT
    assert (message.origin, message.owner_id, message.mailbox_id) == (
        MessageOrigin.HUB,
        team.owner.pk,
        None,
    )
    assert list(message.records.values_list("pk", flat=True)) == [candidate.pk]
    received = smtp_server.messages[0]
    assert received.mail_from == "noreply@sakura.example"
    assert b"Auto-Submitted: auto-generated" in header_block(received.raw)
    assert Message.objects.visible_to(team.teammate).filter(pk=message.pk).exists()
    assert not Message.objects.visible_to(team.outsider).filter(pk=message.pk).exists()


@pytest.mark.django_db
def test_connection_test_signs_in_without_sending(
    team: Team, smtp_server: SmtpServer, mailbox: Mailbox, send_settings: SettingsWrapper
) -> None:
    result = test_smtp_connection(mailbox)
    assert result.ok and "signed in" in result.message
    assert [a.success for a in smtp_server.auth_attempts] == [True]
    use_smtp(mailbox, smtp_server, send_settings, password="not-it")
    result = test_smtp_connection(mailbox)
    assert (result.ok, result.code) == (False, "auth_failed")
    assert "not-it" not in result.message
    assert smtp_server.messages == []


@pytest.mark.django_db
def test_reply_to_outside_the_senders_domain_is_flagged(team: Team, mailbox: Mailbox) -> None:
    store(
        mailbox,
        b"From: CEO <ceo@client.example>\r\nReply-To: ceo@client-mail.example\r\n"
        b"To: owner@sakura.example\r\nMessage-ID: <w1@client.example>\r\nSubject: Pay\r\n\r\nx\r\n",
    )
    store(
        mailbox,
        b"From: Taro <taro@example.jp>\r\nReply-To: taro@mail.example.jp\r\n"
        b"To: owner@sakura.example\r\nMessage-ID: <w2@example.jp>\r\nSubject: Hi\r\n\r\nx\r\n",
    )
    suspicious = Message.objects.get(message_id="w1@client.example")
    fine = Message.objects.get(message_id="w2@example.jp")
    warning = reply_to_warning(suspicious)
    assert warning is not None and "ceo@client-mail.example" in warning
    assert reply_to_warning(fine) is None
    assert reply_recipients(suspicious) == (["ceo@client-mail.example"], [])
