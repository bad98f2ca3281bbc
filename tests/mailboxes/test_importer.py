"""The import pipeline against a real Dovecot: import once, link, deletion policy, scope, status."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from mailboxes.importer import mailbox_poll
from mailboxes.leases import lease_acquire
from mailboxes.mailstore import raw_read
from mailboxes.models import (
    DeletionPolicy,
    FirstImportScope,
    ImportState,
    Mailbox,
    MailboxStatus,
    Message,
    PollOutcome,
    ServerMessage,
)
from mailboxes.services import mailbox_set_pop3_password, mailbox_update
from records.services import record_save
from tests.conftest import Team
from tests.mailboxes.mail import make_message
from tests.peers.fixtures import Pop3Account
from tests.records.factories import CandidateFactory, ClientFactory, ContactFactory

pytestmark = pytest.mark.django_db(transaction=True)


def poll(mailbox: Mailbox):  # type: ignore[no-untyped-def]
    report = mailbox_poll(mailbox_id=mailbox.pk)
    assert report is not None
    mailbox.refresh_from_db()
    return report


def test_imports_each_message_once_byte_exact(
    team: Team, pop3_account: Pop3Account, dovecot_mailbox: Mailbox
) -> None:
    raws = [make_message(subject=f"Message {i}") for i in range(3)]
    for raw in raws:
        pop3_account.deliver(raw)
    first = poll(dovecot_mailbox)
    assert (first.outcome, first.on_server, first.new, first.imported) == (PollOutcome.OK, 3, 3, 3)
    stored = {
        m.subject: raw_read(m.raw.name) for m in Message.objects.filter(mailbox=dovecot_mailbox)
    }
    assert stored == {f"Message {i}": raws[i] for i in range(3)}
    second = poll(dovecot_mailbox)
    assert (second.on_server, second.new, second.imported) == (3, 0, 0)
    assert Message.objects.filter(mailbox=dovecot_mailbox).count() == 3
    assert dovecot_mailbox.status == MailboxStatus.OK
    assert dovecot_mailbox.next_poll_at > timezone.now() + timedelta(minutes=4)
    assert len(pop3_account.messages()) == 3  # the default policy keeps mail on the server


def test_links_every_record_in_from_to_cc(
    team: Team, pop3_account: Pop3Account, dovecot_mailbox: Mailbox
) -> None:
    org = team.organization
    candidate = CandidateFactory(organization=org, owner=team.owner, addresses=["taro@example.jp"])
    client = ClientFactory(organization=org, owner=team.owner)
    contact = ContactFactory(
        organization=org, owner=team.owner, company=client, addresses=["hana@acme.example"]
    )
    cc_candidate = CandidateFactory(
        organization=org, owner=team.owner, addresses=["cc.person@example.com"]
    )
    stranger = CandidateFactory(
        organization=team.other_organization, owner=team.outsider, addresses=["taro@example.jp"]
    )
    named_only = CandidateFactory(
        organization=org, owner=team.owner, addresses=["reply@example.com"]
    )
    pop3_account.deliver(
        make_message(
            sender="Taro <TARO@Example.JP>",
            to="owner@sakura.example, Hana <hana@acme.example>",
            cc="cc.person@example.com",
            body="Write to reply@example.com",
        )
    )
    poll(dovecot_mailbox)
    message = Message.objects.get(mailbox=dovecot_mailbox)
    assert set(message.records.values_list("pk", flat=True)) == {
        candidate.pk,
        contact.pk,
        client.pk,
        cc_candidate.pk,
    }
    assert stranger.pk not in set(message.records.values_list("pk", flat=True))
    assert named_only.pk not in set(message.records.values_list("pk", flat=True))


def test_reply_inherits_thread_links_and_record_gaining_an_address_picks_up_mail(
    team: Team, pop3_account: Pop3Account, dovecot_mailbox: Mailbox
) -> None:
    candidate = CandidateFactory(
        organization=team.organization, owner=team.owner, addresses=["taro@example.jp"]
    )
    pop3_account.deliver(make_message(message_id="<first@example.jp>", subject="Interview"))
    poll(dovecot_mailbox)
    # The reply comes from another address of Taro's the hub does not know yet.
    pop3_account.deliver(
        make_message(
            sender="taro.private@example.net",
            message_id="<second@example.net>",
            in_reply_to="<first@example.jp>",
            references="<first@example.jp>",
            subject="Re: Interview",
        )
    )
    poll(dovecot_mailbox)
    first, second = Message.objects.filter(mailbox=dovecot_mailbox).order_by("pk")
    assert list(second.records.all()) == [candidate.record_ptr]
    assert first.thread_id == second.thread_id
    # An unrelated message from that private address, linked once the record gains it.
    pop3_account.deliver(make_message(sender="taro.private@example.net", subject="Other"))
    poll(dovecot_mailbox)
    other = Message.objects.get(subject="Other")
    assert not other.records.exists()
    record_save(
        record=candidate,
        addresses=["taro@example.jp", "taro.private@example.net"],
        organization=team.organization,
    )
    assert other.records.filter(pk=candidate.pk).exists()


def test_delete_after_import_removes_only_committed_messages(
    team: Team, pop3_account: Pop3Account, dovecot_mailbox: Mailbox
) -> None:
    Mailbox.objects.filter(pk=dovecot_mailbox.pk).update(
        deletion_policy=DeletionPolicy.AFTER_IMPORT
    )
    for i in range(4):
        pop3_account.deliver(make_message(subject=f"D{i}"))
    report = poll(dovecot_mailbox)
    assert (report.imported, report.deleted_on_server) == (4, 4)
    assert pop3_account.messages() == []
    assert (
        ServerMessage.objects.filter(
            mailbox=dovecot_mailbox, deleted_from_server_at__isnull=False
        ).count()
        == 4
    )


def test_delete_when_deleted_here_and_after_days(
    team: Team, pop3_account: Pop3Account, dovecot_mailbox: Mailbox
) -> None:
    Mailbox.objects.filter(pk=dovecot_mailbox.pk).update(
        deletion_policy=DeletionPolicy.WHEN_DELETED_HERE
    )
    pop3_account.deliver(make_message(subject="keep"))
    pop3_account.deliver(make_message(subject="bin"))
    poll(dovecot_mailbox)
    assert len(pop3_account.messages()) == 2
    Message.objects.filter(subject="bin").update(deleted_at=timezone.now())
    assert poll(dovecot_mailbox).deleted_on_server == 1
    assert [b"keep" in raw for raw in pop3_account.messages()] == [True]
    # Mail gone from the hub altogether (retention purge, erasure) counts as deleted here.
    pop3_account.deliver(make_message(subject="erased"))
    poll(dovecot_mailbox)
    Message.objects.filter(subject="erased").delete()
    assert poll(dovecot_mailbox).deleted_on_server == 1
    assert [b"keep" in raw for raw in pop3_account.messages()] == [True]

    Mailbox.objects.filter(pk=dovecot_mailbox.pk).update(
        deletion_policy=DeletionPolicy.AFTER_DAYS, delete_after_days=7
    )
    assert poll(dovecot_mailbox).deleted_on_server == 0
    ServerMessage.objects.filter(mailbox=dovecot_mailbox).update(
        first_seen_at=timezone.now() - timedelta(days=8)
    )
    assert poll(dovecot_mailbox).deleted_on_server == 1
    assert pop3_account.messages() == []


def test_wrong_password_stops_polling_until_changed_then_backfills(
    team: Team, pop3_account: Pop3Account, dovecot_mailbox: Mailbox
) -> None:
    mailbox_set_pop3_password(mailbox=dovecot_mailbox, password="wrong")
    report = poll(dovecot_mailbox)
    assert report.outcome == PollOutcome.AUTH_FAILED and report.error_code == "auth_failed"
    assert dovecot_mailbox.status == MailboxStatus.AUTH_FAILED
    assert "password" in dovecot_mailbox.status_message.lower()
    assert "wrong" not in dovecot_mailbox.status_message
    Mailbox.objects.filter(pk=dovecot_mailbox.pk).update(
        next_poll_at=timezone.now() - timedelta(hours=1)
    )
    assert not Mailbox.objects.due().filter(pk=dovecot_mailbox.pk).exists()
    pop3_account.deliver(make_message(subject="arrived meanwhile"))
    mailbox_set_pop3_password(mailbox=dovecot_mailbox, password=pop3_account.password)
    assert Mailbox.objects.due().filter(pk=dovecot_mailbox.pk).exists()
    assert poll(dovecot_mailbox).imported == 1
    assert dovecot_mailbox.status == MailboxStatus.OK


def test_message_over_the_size_limit_stays_on_the_server(
    team: Team, pop3_account: Pop3Account, dovecot_mailbox: Mailbox, mail_settings
) -> None:  # type: ignore[no-untyped-def]
    mail_settings.MAIL_MAX_MESSAGE_BYTES = 20_000
    Mailbox.objects.filter(pk=dovecot_mailbox.pk).update(
        deletion_policy=DeletionPolicy.AFTER_IMPORT
    )
    pop3_account.deliver(
        make_message(
            subject="Huge CV", attachments=[("cv.pdf", b"%PDF" + b"x" * 40_000, "application/pdf")]
        )
    )
    pop3_account.deliver(make_message(subject="small"))
    report = poll(dovecot_mailbox)
    assert (report.too_large, report.imported, report.deleted_on_server) == (1, 1, 1)
    placeholder = Message.objects.get(import_state=ImportState.PLACEHOLDER)
    assert placeholder.subject == "Huge CV" and "left on the server" in placeholder.snippet
    assert len(pop3_account.messages()) == 1
    assert poll(dovecot_mailbox).too_large == 0  # recorded once, not again each poll


def test_first_import_scope_newest_then_widened(
    team: Team, pop3_account: Pop3Account, dovecot_mailbox: Mailbox
) -> None:
    Mailbox.objects.filter(pk=dovecot_mailbox.pk).update(
        first_import_scope=FirstImportScope.NEWEST, first_import_newest=2
    )
    for i in range(5):
        pop3_account.deliver(make_message(subject=f"N{i}"))
    report = poll(dovecot_mailbox)
    assert (report.imported, report.skipped) == (2, 3)
    assert set(Message.objects.values_list("subject", flat=True)) == {"N3", "N4"}
    pop3_account.deliver(make_message(subject="N5"))
    pop3_account.deliver(make_message(subject="N6"))
    pop3_account.deliver(make_message(subject="N7"))
    assert poll(dovecot_mailbox).imported == 3  # later mail always comes in
    mailbox_update(
        mailbox=dovecot_mailbox, settings_data={"first_import_scope": FirstImportScope.ALL}
    )
    assert poll(dovecot_mailbox).imported == 3
    assert Message.objects.count() == 8


def test_first_import_scope_since_date(
    team: Team, pop3_account: Pop3Account, dovecot_mailbox: Mailbox
) -> None:
    Mailbox.objects.filter(pk=dovecot_mailbox.pk).update(
        first_import_scope=FirstImportScope.SINCE_DATE, first_import_since=date(2026, 6, 1)
    )
    pop3_account.deliver(make_message(subject="old", date=datetime(2025, 1, 1, tzinfo=UTC)))
    pop3_account.deliver(make_message(subject="new", date=datetime(2026, 7, 1, tzinfo=UTC)))
    report = poll(dovecot_mailbox)
    assert (report.imported, report.skipped) == (1, 1)
    assert list(Message.objects.values_list("subject", flat=True)) == ["new"]


def test_same_bytes_twice_is_one_message_but_same_message_id_different_content_is_two(
    team: Team, pop3_account: Pop3Account, dovecot_mailbox: Mailbox
) -> None:
    raw = make_message(subject="twice")
    pop3_account.deliver(raw)
    pop3_account.deliver(raw)
    pop3_account.deliver(make_message(subject="A", message_id="<same@example.jp>"))
    pop3_account.deliver(make_message(subject="B", message_id="<same@example.jp>"))
    report = poll(dovecot_mailbox)
    assert (report.imported, report.duplicates) == (3, 1)
    assert Message.objects.filter(message_id="same@example.jp").count() == 2


def test_two_workers_never_poll_one_mailbox_at_once(team: Team, dovecot_mailbox: Mailbox) -> None:
    token = lease_acquire(mailbox_id=dovecot_mailbox.pk)
    assert token is not None
    assert mailbox_poll(mailbox_id=dovecot_mailbox.pk) is None
    assert lease_acquire(mailbox_id=dovecot_mailbox.pk) is None
    # A crashed worker's lease runs out.
    Mailbox.objects.filter(pk=dovecot_mailbox.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert mailbox_poll(mailbox_id=dovecot_mailbox.pk) is not None


def test_poll_command_prints_the_report(
    team: Team, pop3_account: Pop3Account, dovecot_mailbox: Mailbox, capsys
) -> None:  # type: ignore[no-untyped-def]
    pop3_account.deliver(make_message())
    call_command("poll", str(dovecot_mailbox.pk))
    assert "imported 1" in capsys.readouterr().out
    call_command("poll", "--all")
    assert "imported 0" in capsys.readouterr().out
