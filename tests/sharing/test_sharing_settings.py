"""The sharing settings page, its preview, admin locks, hand-overs and the audit trail."""

from __future__ import annotations

import logging
import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from mailboxes.models import (
    AddressRole,
    Mailbox,
    Message,
    MessageAddress,
    MessageLink,
    MessageOrigin,
)
from sharing.models import AuditAction, MailboxSharing, Permission, SharingAuditEntry
from tests.conftest import Team
from tests.mailboxes.factories import MailboxFactory
from tests.records.factories import CandidateFactory

pytestmark = pytest.mark.django_db


def received(mailbox: Mailbox, *, sender: str, record=None, subject: str = "Hello") -> Message:  # type: ignore[no-untyped-def]
    message = Message.objects.create(
        organization_id=mailbox.organization_id,
        owner_id=mailbox.owner_id,
        mailbox=mailbox,
        origin=MessageOrigin.POP3,
        subject=subject,
        from_address=sender,
        sort_at=timezone.now(),
    )
    MessageAddress.objects.create(
        message=message, role=AddressRole.FROM, address=sender, domain=sender.split("@")[1]
    )
    MessageAddress.objects.create(
        message=message,
        role=AddressRole.TO,
        address=mailbox.email_address,
        domain=mailbox.email_address.split("@")[1],
    )
    if record is not None:
        MessageLink.objects.create(message=message, record=record)
    return message


def post_sharing(client, mailbox: Mailbox, **data):  # type: ignore[no-untyped-def]
    payload = {"permission": "private", "excluded_domains": "", **data}
    return client.post(reverse("sharing:mailbox", args=[mailbox.pk]), payload)


@pytest.fixture
def mailbox(team: Team) -> Mailbox:
    return MailboxFactory(owner=team.owner, email_address="owner@sakura.example")


def test_page_explains_each_permission_and_private_is_the_default(
    team: Team, mailbox: Mailbox
) -> None:
    page = (
        team.client_for(team.owner)
        .get(reverse("sharing:mailbox", args=[mailbox.pk]))
        .content.decode()
    )
    assert MailboxSharing.objects.get(mailbox=mailbox).permission == Permission.PRIVATE
    assert 'value="private" checked' in page
    for sentence in (
        "Only you see",
        "Admins see",
        "except mail with an excluded domain",
        "“share emails” box is ticked",
        "mail that concerns no record stays yours alone",
    ):
        assert sentence in page


def test_changing_permission_or_domains_applies_on_the_next_load_old_mail_too(
    team: Team, mailbox: Mailbox
) -> None:
    candidate = CandidateFactory(organization=team.organization, owner=team.owner)
    old = received(mailbox, sender="taro@mail.client.example", record=candidate)
    teammate_sees = lambda: Message.objects.visible_to(team.teammate).filter(pk=old.pk).exists()  # noqa: E731
    assert not teammate_sees()
    client = team.client_for(team.owner)
    assert post_sharing(client, mailbox, permission="public").status_code == 302
    assert teammate_sees()
    post_sharing(client, mailbox, permission="public", excluded_domains="client.example")
    assert not teammate_sees()  # a subdomain of an excluded domain is excluded too
    assert set(SharingAuditEntry.objects.values_list("action", flat=True)) == {
        AuditAction.PERMISSION_CHANGED,
        AuditAction.DOMAINS_CHANGED,
    }


@pytest.mark.parametrize(
    ("domains", "message"),
    [
        ("a.example b.example c.example d.example e.example f.example", "at most 5"),
        ("not_a_domain", "not a valid domain"),
        ("https://client.example", "without http://"),
        ("client.example/jobs", "without http://"),
        ("hr@client.example", "without the part before @"),
        ("client.example:443", "no port"),
    ],
)
def test_bad_excluded_domains_are_form_errors_and_change_nothing(
    team: Team, mailbox: Mailbox, domains: str, message: str
) -> None:
    response = post_sharing(
        team.client_for(team.owner), mailbox, permission="public", excluded_domains=domains
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert domains.split()[0] in response.content.decode()  # the typing is kept
    assert MailboxSharing.objects.get(mailbox=mailbox).permission == Permission.PRIVATE


def test_tampered_posts_change_nothing_and_are_logged(
    team: Team, mailbox: Mailbox, caplog: pytest.LogCaptureFixture
) -> None:
    teammate_box = MailboxFactory(owner=team.teammate)
    client = team.client_for(team.owner)
    assert post_sharing(client, teammate_box, permission="public").status_code == 404
    foreign = MailboxFactory(owner=team.outsider)
    assert post_sharing(client, foreign, permission="public").status_code == 404
    with caplog.at_level(logging.WARNING):
        response = post_sharing(client, mailbox, permission="everyone")
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert "refused sharing change" in caplog.text
    assert {s.permission for s in MailboxSharing.objects.all()} == {Permission.PRIVATE}


def test_preview_says_what_changes_without_saving(team: Team, mailbox: Mailbox) -> None:
    records = [CandidateFactory(organization=team.organization, owner=team.owner) for _ in range(2)]
    for index in range(3):
        received(mailbox, sender=f"c{index}@example.com", record=records[index % 2])
    received(mailbox, sender="nobody@example.com")  # linked to no record: never shared
    client = team.client_for(team.owner)
    response = post_sharing(client, mailbox, permission="public", preview="1")
    assert "3 emails on 2 records become visible to 1 recruiters" in response.content.decode()
    assert "3 emails on 2 records become visible to 1 admins" in response.content.decode()
    assert MailboxSharing.objects.get(mailbox=mailbox).permission == Permission.PRIVATE
    post_sharing(client, mailbox, permission="public")
    hidden = post_sharing(client, mailbox, permission="admin", preview="1").content.decode()
    assert "3 emails on 2 records are hidden again from 1 recruiters" in hidden


def test_admin_lock_prevents_switching_to_private(team: Team, mailbox: Mailbox) -> None:
    owner = team.client_for(team.owner)
    post_sharing(owner, mailbox, permission="public")
    admin = team.client_for(team.admin)
    assert (
        admin.post(
            reverse("sharing:lock", args=[team.owner.membership.pk]), {"locked": "1"}
        ).status_code
        == 302
    )
    response = post_sharing(owner, mailbox, permission="private")
    assert "locked your mail settings" in response.content.decode()
    assert MailboxSharing.objects.get(mailbox=mailbox).permission == Permission.PUBLIC
    assert (
        post_sharing(owner, mailbox, permission="custom").status_code == 302
    )  # other changes allowed
    admin.post(reverse("sharing:lock", args=[team.owner.membership.pk]), {"locked": "0"})
    assert post_sharing(owner, mailbox, permission="private").status_code == 302
    actions = list(SharingAuditEntry.objects.order_by("pk").values_list("action", flat=True))
    assert (
        AuditAction.LOCKED in actions
        and AuditAction.UNLOCKED in actions
        and AuditAction.TAMPERED in actions
    )


def test_hand_over_moves_record_mail_only(team: Team, mailbox: Mailbox) -> None:
    candidate = CandidateFactory(organization=team.organization, owner=team.owner)
    record_mail = received(mailbox, sender="c@example.com", record=candidate)
    private_mail = received(mailbox, sender="friend@example.com")
    admin = team.client_for(team.admin)
    admin.post(reverse("member_toggle_active", args=[team.owner.membership.pk]))
    response = admin.post(
        reverse("sharing:hand_over"),
        {"from": team.owner.membership.pk, "to": team.teammate.membership.pk},
    )
    assert response.status_code == 302
    record_mail.refresh_from_db()
    private_mail.refresh_from_db()
    assert record_mail.owner == team.teammate and private_mail.owner == team.owner
    assert Message.objects.visible_to(team.teammate).filter(pk=record_mail.pk).exists()
    trail = admin.get(reverse("sharing:audit")).content.decode()
    assert "Record mail handed over" in trail


def test_deactivated_owner_stops_polling_but_shared_mail_stays_visible(
    team: Team, mailbox: Mailbox
) -> None:
    candidate = CandidateFactory(organization=team.organization, owner=team.owner)
    message = received(mailbox, sender="c@example.com", record=candidate)
    post_sharing(team.client_for(team.owner), mailbox, permission="public")
    Mailbox.objects.filter(pk=mailbox.pk).update(next_poll_at=timezone.now())
    assert Mailbox.objects.due().filter(pk=mailbox.pk).exists()
    team.client_for(team.admin).post(
        reverse("member_toggle_active", args=[team.owner.membership.pk])
    )
    assert not Mailbox.objects.due().filter(pk=mailbox.pk).exists()
    assert Message.objects.visible_to(team.teammate).filter(pk=message.pk).exists()


def test_admin_pages_are_for_admins_of_the_organisation(team: Team) -> None:
    recruiter = team.client_for(team.owner)
    assert recruiter.get(reverse("sharing:admin")).status_code == 403
    assert recruiter.get(reverse("sharing:audit")).status_code == 403
    assert (
        recruiter.post(
            reverse("sharing:lock", args=[team.teammate.membership.pk]), {"locked": "1"}
        ).status_code
        == 403
    )
    outsider = team.client_for(team.outsider)
    assert (
        outsider.post(
            reverse("sharing:lock", args=[team.owner.membership.pk]), {"locked": "1"}
        ).status_code
        == 404
    )
    assert (
        outsider.post(
            reverse("sharing:hand_over"),
            {"from": team.owner.membership.pk, "to": team.teammate.membership.pk},
        ).status_code
        == 404
    )
    assert team.owner.email not in outsider.get(reverse("sharing:admin")).content.decode()


@pytest.mark.parametrize("mailboxes", [1, 6])
def test_admin_page_shows_each_mailbox_permission_in_constant_queries(
    team: Team, mailboxes: int, django_assert_max_num_queries: object
) -> None:
    for number in range(mailboxes):
        box = MailboxFactory(owner=team.teammate, name=f"Box {number}", is_active=number == 0)
        MailboxSharing.objects.filter(mailbox=box).update(
            permission=Permission.PUBLIC if number % 2 else Permission.ADMIN, locked=number == 1
        )
    admin = team.client_for(team.admin)
    # Session, user, membership with its organisation; the header's mailboxes; the members;
    # their mailboxes with their sharing.
    with django_assert_max_num_queries(6):  # type: ignore[operator]
        page = admin.get(reverse("sharing:admin")).content.decode()
    assert f'Box 0 <span class="badge">Active</span>: {Permission.ADMIN.label}' in page
    if mailboxes > 1:
        assert f"Box 1: {Permission.PUBLIC.label} 🔒" in page
    lock_url = reverse("sharing:lock", args=[team.teammate.membership.pk])
    assert page.count(f'form="member-locks" formaction="{lock_url}"') == 2
    assert MailboxSharing(permission="bogus").permission_label == "bogus"


def test_lock_buttons_post_the_pages_one_form_with_its_csrf_token(
    team: Team, mailbox: Mailbox
) -> None:
    """Every row's Lock and Unlock buttons submit one form of the page (one CSRF token for all
    rows) to their member's lock URL, as a browser sends it."""
    admin = Client(enforce_csrf_checks=True)
    admin.force_login(team.admin)
    page = admin.get(reverse("sharing:admin")).content.decode()
    form = re.search(r'<form method="post" id="member-locks">(.*?)</form>', page, re.S)
    assert form is not None
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.group(1))
    assert token is not None
    lock_url = reverse("sharing:lock", args=[team.owner.membership.pk])
    button = f'<button form="member-locks" formaction="{lock_url}" name="locked" value="1">'
    assert button in page
    response = admin.post(lock_url, {"csrfmiddlewaretoken": token.group(1), "locked": "1"})
    assert response.status_code == 302
    assert MailboxSharing.objects.get(mailbox=mailbox).locked
    assert admin.post(lock_url, {"locked": "0"}).status_code == 403  # no token: refused
