"""The import pipeline (not only the POP3 client) against servers that misbehave.

Every test ends with the same three promises of the "Importing mail" contract, checked by
``assert_safe``: nothing lost (each message is on the server or stored), nothing imported twice,
and nothing deleted from the server before its import was committed. The fault server
(``tests.peers.faultpop3``) plays the servers Dovecot will not imitate.
"""

from __future__ import annotations

import hashlib
import poplib
import re
import shutil
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from mailboxes.importer import mailbox_poll
from mailboxes.mailstore import raw_read
from mailboxes.models import (
    DeletionPolicy,
    ImportState,
    Mailbox,
    MailboxStatus,
    Message,
    PollOutcome,
    PollReport,
    Security,
    ServerMessage,
    ServerMessageState,
)
from mailboxes.poll_report import backoff_delay
from mailboxes.services import quarantine_retry
from tests.conftest import Team
from tests.mailboxes.factories import MailboxFactory
from tests.mailboxes.mail import make_message
from tests.peers.faultpop3 import FaultPop3Server
from tests.peers.ports import free_ports

# Real commits, as in production: "committed" is what these tests are about.
pytestmark = pytest.mark.django_db(transaction=True)


def crlf(raw: bytes) -> bytes:
    """``raw`` as a POP3 client receives it: every line end CRLF, the last line ended."""
    raw = re.sub(rb"(?<!\r)\n", b"\r\n", raw)
    return raw if raw.endswith(b"\r\n") else raw + b"\r\n"


def digest(raw: bytes) -> str:
    return hashlib.sha256(crlf(raw)).hexdigest()


def fault_mailbox(server: FaultPop3Server, owner: Any, **fields: Any) -> Mailbox:
    """A mailbox of ``owner`` on the fault server (plain text: the server has no certificate)."""
    defaults: dict[str, Any] = {
        "pop3_host": server.host,
        "pop3_port": server.port,
        "pop3_security": Security.NONE,
        "pop3_username": server.username,
        "password": server.password,
        "email_address": "owner@sakura.example",
    }
    mailbox: Mailbox = MailboxFactory(owner=owner, **(defaults | fields))  # type: ignore[assignment]
    return mailbox


def poll(mailbox: Mailbox, server: FaultPop3Server | None = None) -> PollReport:
    report = mailbox_poll(mailbox_id=mailbox.pk)
    assert report is not None
    if server is not None:
        server.wait_idle()  # the session has ended, so the server committed what it would
    mailbox.refresh_from_db()
    return report


def assert_safe(mailbox: Mailbox, server: FaultPop3Server, delivered: list[bytes]) -> None:
    """Nothing lost, nothing imported twice, nothing deleted before its import was committed."""
    stored = Counter(
        Message.objects.filter(mailbox=mailbox)
        .exclude(import_state=ImportState.PLACEHOLDER)
        .values_list("raw_sha256", flat=True)
    )
    assert all(count == 1 for count in stored.values()), "a message was imported twice"
    on_server = {digest(raw) for _uid, raw in server.messages}
    for raw in delivered:
        # A message that left the server is one the hub had committed (a lost one would be
        # neither here nor there).
        assert digest(raw) in on_server or digest(raw) in stored, "a message was lost"
    committed = set(
        ServerMessage.objects.filter(
            mailbox=mailbox,
            state__in=[ServerMessageState.IMPORTED, ServerMessageState.DUPLICATE],
        ).values_list("uid", flat=True)
    )
    for uid, raw in zip(server.deleted_uids, server.deleted_messages, strict=True):
        # Deleted by its UID, or (no usable UID) by the content UID of the very bytes deleted.
        assert uid in committed or f"sha256:{digest(raw)}" in committed or server.faults.gmail_quit
    for message in Message.objects.filter(mailbox=mailbox).exclude(
        import_state=ImportState.PLACEHOLDER
    ):
        assert hashlib.sha256(raw_read(message.raw.name)).hexdigest() == message.raw_sha256


def add(server: FaultPop3Server, count: int, *, prefix: str = "M") -> list[bytes]:
    raws = [make_message(subject=f"{prefix}{i}") for i in range(count)]
    for raw in raws:
        server.add_message(raw)
    return raws


@pytest.fixture
def server(fault_pop3: FaultPop3Server, mail_settings: Any) -> FaultPop3Server:
    return fault_pop3


def test_wrong_password_sets_auth_failed_and_stops_polling(
    team: Team, server: FaultPop3Server
) -> None:
    delivered = add(server, 2)
    mailbox = fault_mailbox(server, team.owner, password="not-the-password")
    report = poll(mailbox, server)
    assert (report.outcome, report.error_code) == (PollOutcome.AUTH_FAILED, "auth_failed")
    assert mailbox.status == MailboxStatus.AUTH_FAILED and mailbox.is_polling_stopped
    assert "password" in mailbox.status_message.lower()
    assert "not-the-password" not in mailbox.status_message
    Mailbox.objects.filter(pk=mailbox.pk).update(next_poll_at=timezone.now() - timedelta(hours=1))
    assert not Mailbox.objects.due().filter(pk=mailbox.pk).exists()  # providers lock retriers
    assert not Message.objects.exists()
    assert_safe(mailbox, server, delivered)


def test_stls_required_but_not_offered_sends_no_password(
    team: Team, server: FaultPop3Server
) -> None:
    delivered = add(server, 1)
    mailbox = fault_mailbox(server, team.owner, pop3_security=Security.STARTTLS)
    report = poll(mailbox, server)
    assert (report.outcome, report.error_code) == (PollOutcome.ERROR, "stls_not_offered")
    assert mailbox.status == MailboxStatus.ERROR and "STARTTLS" in mailbox.status_message
    assert not any(c.startswith(("USER", "PASS")) for c in server.commands)
    assert_safe(mailbox, server, delivered)


def test_connection_refused_backs_off(team: Team, server: FaultPop3Server) -> None:
    (closed_port,) = free_ports("127.0.0.1", 1)  # nothing listens there
    mailbox = fault_mailbox(server, team.owner, pop3_port=closed_port)
    before = timezone.now()
    report = poll(mailbox)
    assert (report.outcome, report.error_code) == (PollOutcome.ERROR, "refused")
    assert mailbox.status == MailboxStatus.ERROR and mailbox.consecutive_failures == 1
    assert "refused the connection" in mailbox.status_message
    assert (
        before + timedelta(seconds=29)
        < mailbox.next_poll_at
        < timezone.now() + timedelta(seconds=91)
    )


def test_stall_longer_than_the_timeout_backs_off_with_jitter(
    team: Team, server: FaultPop3Server, mail_settings: Any
) -> None:
    mail_settings.POP3_TIMEOUT_SECONDS = 1
    delivered = add(server, 3)
    server.faults.stall_at, server.faults.stall_mid_retr, server.faults.stall_seconds = (
        "RETR",
        True,
        2,
    )
    mailbox = fault_mailbox(server, team.owner, deletion_policy=DeletionPolicy.AFTER_IMPORT)
    for failures, (low, high) in enumerate([(30, 90), (60, 180)], start=1):
        start = timezone.now()
        report = poll(mailbox)
        server.wait_idle(timeout=5)  # the stalled session wakes up, finds us gone, unlocks
        assert (report.outcome, report.error_code) == (PollOutcome.ERROR, "timeout")
        assert mailbox.status == MailboxStatus.ERROR and mailbox.consecutive_failures == failures
        assert (
            mailbox.status_message
            == "The mail server did not answer in time. If this keeps happening, check the port and security setting."
        )
        # 1, 2, 4 … minutes, each ±50%.
        assert (
            start + timedelta(seconds=low - 1)
            <= mailbox.next_poll_at
            <= timezone.now() + timedelta(seconds=high + 1)
        )
        assert "QUIT" not in server.commands
    assert len({backoff_delay(3) for _ in range(20)}) > 1  # jitter: workers do not retry in step
    server.faults.stall_at = None
    report = poll(mailbox, server)
    assert (report.outcome, report.imported, report.deleted_on_server) == (PollOutcome.OK, 3, 3)
    assert mailbox.consecutive_failures == 0 and mailbox.status == MailboxStatus.OK
    assert_safe(mailbox, server, delivered)


@pytest.mark.parametrize(
    ("count", "stalled_message"),
    [(20, 10), (120, 30)],  # parsed in the poll's process; in its parser process (100 or more)
    ids=["in-process", "parser-process"],
)
def test_a_stalled_server_does_not_hold_back_what_came_before(
    team: Team, server: FaultPop3Server, count: int, stalled_message: int
) -> None:
    """While a RETR waits for a slow server, the messages retrieved before it are committed
    (and "Fetch now" counts them), not held until a batch is full."""
    delivered = add(server, count)
    server.faults.stall_at, server.faults.stall_seconds = f"RETR {stalled_message}", 4
    mailbox = fault_mailbox(server, team.owner)

    def run() -> None:
        try:
            mailbox_poll(mailbox_id=mailbox.pk)
        finally:
            connections.close_all()  # this thread's connection must not outlive the test

    polling = threading.Thread(target=run)
    polling.start()
    try:
        deadline = time.monotonic() + 20
        while f"RETR {stalled_message}" not in server.commands:
            assert time.monotonic() < deadline, "the poll never reached the stalled message"
            time.sleep(0.05)
        time.sleep(2)  # well inside the stall, well past the idle flush
        during_stall = Message.objects.filter(mailbox=mailbox).count()
        progress = PollReport.objects.filter(mailbox=mailbox).latest("started_at").imported
    finally:
        polling.join(timeout=30)
    assert (during_stall, progress) == (stalled_message - 1, stalled_message - 1)
    server.wait_idle()
    assert Message.objects.filter(mailbox=mailbox).count() == count
    assert_safe(mailbox, server, delivered)


def test_drop_mid_retr_commits_what_came_before_and_deletes_nothing(
    team: Team, server: FaultPop3Server
) -> None:
    delivered = add(server, 5)
    server.faults.drop_mid_retr = 3
    mailbox = fault_mailbox(server, team.owner, deletion_policy=DeletionPolicy.AFTER_IMPORT)
    report = poll(mailbox, server)
    assert (report.outcome, report.error_code, report.imported) == (
        PollOutcome.ERROR,
        "connection_lost",
        2,
    )
    assert set(Message.objects.values_list("subject", flat=True)) == {"M0", "M1"}
    assert len(server.messages) == 5 and server.deleted_uids == []  # no QUIT: nothing deleted
    assert_safe(mailbox, server, delivered)
    server.faults.drop_mid_retr = None
    report = poll(mailbox, server)
    assert (report.outcome, report.imported, report.deleted_on_server) == (PollOutcome.OK, 3, 5)
    assert server.messages == [] and Message.objects.count() == 5
    assert_safe(mailbox, server, delivered)


def test_drop_before_quit_deletes_on_the_next_poll(team: Team, server: FaultPop3Server) -> None:
    delivered = add(server, 3)
    server.faults.drop_before_quit = True
    mailbox = fault_mailbox(server, team.owner, deletion_policy=DeletionPolicy.AFTER_IMPORT)
    report = poll(mailbox, server)
    assert (report.outcome, report.error_code, report.imported) == (
        PollOutcome.ERROR,
        "connection_lost",
        3,
    )
    assert len(server.messages) == 3  # the DELEs never reached the UPDATE state
    assert not ServerMessage.objects.filter(deleted_from_server_at__isnull=False).exists()
    assert_safe(mailbox, server, delivered)
    server.faults.drop_before_quit = False
    report = poll(mailbox, server)
    assert (report.outcome, report.imported, report.deleted_on_server) == (PollOutcome.OK, 0, 3)
    assert server.messages == [] and Message.objects.count() == 3
    assert_safe(mailbox, server, delivered)


def test_err_on_retr_skips_that_message_and_the_poll_goes_on(
    team: Team, server: FaultPop3Server, mail_settings: Any
) -> None:
    mail_settings.MAIL_QUARANTINE_AFTER_FAILURES = 3
    delivered = add(server, 4)
    bad_uid = server.messages[1][0]
    server.faults.err_on = {"RETR 2": "-ERR cannot read that message"}
    mailbox = fault_mailbox(server, team.owner, deletion_policy=DeletionPolicy.AFTER_IMPORT)
    report = poll(mailbox, server)
    # The -ERR is a clean reply: the same session fetches the rest, and ends with QUIT, so the
    # policy applies to what was committed (the refused message was never retrieved).
    assert (report.outcome, report.imported, report.failed, report.deleted_on_server) == (
        PollOutcome.PARTIAL,
        3,
        1,
        3,
    )
    assert sum(command.startswith("USER ") for command in server.commands) == 1  # one session
    assert {"RETR 3", "RETR 4", "QUIT"} <= set(server.commands)
    assert [uid for uid, _raw in server.messages] == [bad_uid]
    row = ServerMessage.objects.get(uid=bad_uid)
    assert (row.state, row.failures) == (ServerMessageState.FAILED, 1)
    assert_safe(mailbox, server, delivered)
    # Alone on the server now, it is message 1; two more refusals quarantine it.
    server.faults.err_on = {"RETR 1": "-ERR cannot read that message"}
    for failures in (2, 3):
        report = poll(mailbox, server)
        assert (report.outcome, report.failed) == (PollOutcome.PARTIAL, 1)
        row.refresh_from_db()
        assert row.failures == failures
        assert_safe(mailbox, server, delivered)
    assert row.state == ServerMessageState.QUARANTINED
    assert report.quarantined == 1
    seen = len(server.commands)
    report = poll(mailbox, server)
    assert (report.outcome, report.imported, report.quarantined) == (PollOutcome.OK, 0, 1)
    assert "RETR 1" not in server.commands[seen:]  # a quarantined message is not fetched
    assert [uid for uid, _raw in server.messages] == [bad_uid]
    # The owner retries it from the quarantine; the server can read it again by now.
    server.faults.err_on = {}
    assert quarantine_retry(mailbox=mailbox, server_message_ids=[row.pk]) == 1
    report = poll(mailbox, server)
    assert (report.imported, report.deleted_on_server, report.quarantined) == (1, 1, 0)
    assert server.messages == [] and Message.objects.count() == 4
    assert_safe(mailbox, server, delivered)


def test_err_on_retr_does_not_hold_back_quit_and_a_gmail_like_server_keeps_it(
    team: Team, server: FaultPop3Server
) -> None:
    delivered = add(server, 3)
    bad_uid = server.messages[0][0]
    server.faults.err_on = {"RETR 1": "-ERR message is being scanned"}
    server.faults.gmail_quit = True  # at QUIT, every RETR'd message goes, DELE'd or not
    mailbox = fault_mailbox(server, team.owner)
    report = poll(mailbox, server)
    assert (report.outcome, report.imported, report.failed) == (PollOutcome.PARTIAL, 2, 1)
    assert server.commands[-1] == "QUIT"
    # Only what was handed out (and committed) left; the refused message is still there.
    assert [uid for uid, _raw in server.messages] == [bad_uid]
    assert_safe(mailbox, server, delivered)
    server.faults.err_on = {}
    report = poll(mailbox, server)
    assert (report.outcome, report.imported) == (PollOutcome.OK, 1)
    assert Message.objects.count() == 3
    assert_safe(mailbox, server, delivered)


def test_a_server_refusing_every_retr_ends_the_poll_after_a_few(
    team: Team, server: FaultPop3Server
) -> None:
    delivered = add(server, 12)
    server.faults.err_on = {f"RETR {n}": "-ERR storage unavailable" for n in range(3, 13)}
    mailbox = fault_mailbox(server, team.owner, deletion_policy=DeletionPolicy.AFTER_IMPORT)
    report = poll(mailbox, server)
    assert (report.outcome, report.error_code, report.imported) == (
        PollOutcome.ERROR,
        "protocol",
        2,
    )
    # Five refusals in a row: the server's fault, so the others collect no failure.
    assert ServerMessage.objects.filter(state=ServerMessageState.FAILED).count() == 5
    assert "RETR 8" not in server.commands and "QUIT" not in server.commands
    assert len(server.messages) == 12  # no QUIT: nothing deleted, not even what was committed
    assert_safe(mailbox, server, delivered)


def test_server_without_uidl_is_deduplicated_by_content(
    team: Team, server: FaultPop3Server
) -> None:
    delivered = add(server, 3)
    server.add_message(delivered[0])  # a second copy of the same bytes
    server.faults.no_uidl = True
    mailbox = fault_mailbox(server, team.owner)
    report = poll(mailbox, server)
    assert (report.outcome, report.imported, report.duplicates, report.failed) == (
        PollOutcome.OK,
        3,
        0,
        0,
    )
    report = poll(mailbox, server)
    assert (report.outcome, report.imported, report.failed) == (PollOutcome.OK, 0, 0)
    delivered += add(server, 1, prefix="later")
    assert poll(mailbox, server).imported == 1
    assert Message.objects.count() == 4
    assert_safe(mailbox, server, delivered + [delivered[0]])


@pytest.mark.parametrize(
    ("policy", "days_on_server", "binned", "deleted"),
    [
        (DeletionPolicy.KEEP, 0, False, 0),
        (DeletionPolicy.AFTER_IMPORT, 0, False, 3),
        (DeletionPolicy.AFTER_DAYS, 3, False, 0),
        (DeletionPolicy.AFTER_DAYS, 8, False, 3),
        (DeletionPolicy.WHEN_DELETED_HERE, 0, False, 0),
        (DeletionPolicy.WHEN_DELETED_HERE, 0, True, 1),
    ],
)
def test_a_server_without_uidl_gets_the_deletion_policy_by_content(
    team: Team,
    server: FaultPop3Server,
    policy: str,
    days_on_server: int,
    binned: bool,
    deleted: int,
) -> None:
    delivered = add(server, 3)
    server.faults.no_uidl = True
    mailbox = fault_mailbox(server, team.owner, deletion_policy=policy, delete_after_days=7)
    report = poll(mailbox, server)
    assert (report.outcome, report.imported) == (PollOutcome.OK, 3)
    # Delete-after-import acts in the importing session itself; the others at a later poll
    # (which, without UIDL, retrieves every message again to know it by its content).
    first_deleted = 3 if policy == DeletionPolicy.AFTER_IMPORT else 0
    assert report.deleted_on_server == first_deleted
    ServerMessage.objects.update(first_seen_at=timezone.now() - timedelta(days=days_on_server))
    if binned:
        Message.objects.filter(subject="M1").update(deleted_at=timezone.now())
    delivered += add(server, 1, prefix="late")  # arrives meanwhile: imported, and its turn
    report = poll(mailbox, server)
    assert report.imported == 1
    late = 1 if policy == DeletionPolicy.AFTER_IMPORT else 0
    assert report.deleted_on_server == deleted - first_deleted + late
    assert len(server.messages) == 4 - deleted - late
    if binned:
        assert digest(delivered[1]) not in {digest(raw) for _uid, raw in server.messages}
    assert_safe(mailbox, server, delivered)


def test_without_uidl_a_message_the_session_could_not_read_is_not_deleted(
    team: Team, server: FaultPop3Server
) -> None:
    delivered = add(server, 3)
    server.faults.no_uidl = True
    mailbox = fault_mailbox(server, team.owner, deletion_policy=DeletionPolicy.AFTER_IMPORT)
    server.faults.drop_before_quit = True
    assert poll(mailbox, server).imported == 3  # committed, but that session never QUIT
    server.faults.drop_before_quit = False
    server.faults.err_on = {"RETR 2": "-ERR not now"}
    report = poll(mailbox, server)
    # Message 2 is stored already, but this session did not read it: nothing says that number
    # is still those bytes, so it stays.
    assert (report.outcome, report.failed, report.deleted_on_server) == (PollOutcome.PARTIAL, 1, 2)
    assert [digest(raw) for _uid, raw in server.messages] == [digest(delivered[1])]
    assert_safe(mailbox, server, delivered)


def test_two_messages_with_one_uid_are_both_imported_once(
    team: Team, server: FaultPop3Server
) -> None:
    first, second, other = (make_message(subject=s) for s in ("first", "second", "other"))
    server.add_message(first, uid="same")
    server.add_message(second, uid="same")
    server.add_message(other)
    mailbox = fault_mailbox(server, team.owner, deletion_policy=DeletionPolicy.AFTER_IMPORT)
    server.faults.drop_before_quit = True  # first a session whose deletions never happen
    report = poll(mailbox, server)
    assert (report.outcome, report.imported, report.failed) == (PollOutcome.ERROR, 3, 0)
    assert len(server.messages) == 3
    server.faults.drop_before_quit = False
    report = poll(mailbox, server)
    assert (report.outcome, report.imported, report.deleted_on_server) == (PollOutcome.OK, 0, 3)
    # The ambiguous UID names nothing, but each of its messages was retrieved in the session
    # and matched to stored bytes by its content UID, under a number that stays put for the
    # session (RFC 1939 §3): all three go.
    assert server.messages == []
    assert set(Message.objects.values_list("subject", flat=True)) == {"first", "second", "other"}
    assert_safe(mailbox, server, [first, second, other])


def test_a_uid_reused_after_the_old_message_left_is_a_new_message(
    team: Team, server: FaultPop3Server
) -> None:
    old, new, third = (make_message(subject=s) for s in ("old", "new", "third"))
    server.add_message(old, uid="x")
    mailbox = fault_mailbox(
        server, team.owner, deletion_policy=DeletionPolicy.AFTER_DAYS, delete_after_days=7
    )
    assert poll(mailbox, server).imported == 1
    ServerMessage.objects.update(first_seen_at=timezone.now() - timedelta(days=8))
    assert poll(mailbox, server).deleted_on_server == 1
    server.add_message(new, uid="x")  # the server hands the freed UID to new mail
    report = poll(mailbox, server)
    assert (report.imported, report.deleted_on_server) == (1, 0)  # seen today: kept 7 days
    assert [raw for _uid, raw in server.messages] == [new]
    # Another mail program deletes it; the UID comes back once more, for a third message.
    client = poplib.POP3(server.host, server.port, timeout=5)
    client.user(server.username), client.pass_(server.password), client.dele(1), client.quit()
    server.wait_idle()
    assert poll(mailbox, server).imported == 0
    server.add_message(third, uid="x")
    assert poll(mailbox, server).imported == 1
    assert set(Message.objects.values_list("subject", flat=True)) == {"old", "new", "third"}
    assert_safe(mailbox, server, [old, new, third])


def test_renumbered_messages_are_told_apart_by_uid(team: Team, server: FaultPop3Server) -> None:
    delivered = add(server, 3)
    server.faults.renumber = True
    mailbox = fault_mailbox(server, team.owner, deletion_policy=DeletionPolicy.WHEN_DELETED_HERE)
    assert poll(mailbox, server).imported == 3
    delivered += add(server, 2, prefix="N")
    binned = Message.objects.get(subject="M1")
    Message.objects.filter(pk=binned.pk).update(deleted_at=timezone.now())
    report = poll(mailbox, server)  # another session, another numbering
    assert (report.imported, report.deleted_on_server) == (2, 1)
    assert server.deleted_uids == [ServerMessage.objects.get(message=binned).uid]
    assert Message.objects.count() == 5
    assert_safe(mailbox, server, delivered)


def block_raw_store(raw: bytes, media_root: str) -> None:
    """Make the mail store refuse this one message's raw file, as a full or broken disk would.

    A real fault, not a mock: a folder that is not empty sits where the message's file must be
    written (``raw/<2 hex>/<sha256>.eml``), so the store fails (OSError) for it and only for it.
    """
    in_the_way = raw_path(raw, media_root)
    in_the_way.mkdir(parents=True)
    (in_the_way / "in-the-way").write_bytes(b"in the way")


def raw_path(raw: bytes, media_root: str) -> Path:
    name = digest(raw)
    return Path(media_root) / "raw" / name[:2] / f"{name}.eml"


def test_gmail_like_quit_is_never_sent_while_a_message_is_uncommitted(
    team: Team, server: FaultPop3Server, mail_settings: Any
) -> None:
    delivered = add(server, 4)
    block_raw_store(delivered[1], mail_settings.MEDIA_ROOT)
    server.faults.gmail_quit = True  # at QUIT, every RETR'd message goes, DELE'd or not
    mailbox = fault_mailbox(server, team.owner, deletion_policy=DeletionPolicy.AFTER_IMPORT)
    report = poll(mailbox, server)
    assert (report.outcome, report.imported, report.failed) == (PollOutcome.PARTIAL, 3, 1)
    assert "QUIT" not in server.commands  # so Gmail did not take the message that failed
    assert len(server.messages) == 4
    assert_safe(mailbox, server, delivered)
    for _ in range(2):
        poll(mailbox, server)
    assert (
        ServerMessage.objects.get(uid=server.messages[1][0]).state == ServerMessageState.QUARANTINED
    )
    report = poll(mailbox, server)  # the quarantined message is no longer fetched: QUIT is safe
    assert (report.outcome, report.deleted_on_server, report.quarantined) == (PollOutcome.OK, 3, 1)
    assert [raw for _uid, raw in server.messages] == [delivered[1]]
    assert_safe(mailbox, server, delivered)
    # The disk is repaired and the owner retries it.
    shutil.rmtree(raw_path(delivered[1], mail_settings.MEDIA_ROOT))
    quarantine_retry(
        mailbox=mailbox, server_message_ids=list(ServerMessage.objects.values_list("pk", flat=True))
    )
    report = poll(mailbox, server)
    assert (report.outcome, report.imported, report.deleted_on_server) == (PollOutcome.OK, 1, 1)
    assert server.messages == [] and Message.objects.count() == 4
    assert_safe(mailbox, server, delivered)


def test_message_over_the_size_limit_is_never_retrieved(
    team: Team, server: FaultPop3Server, mail_settings: Any
) -> None:
    mail_settings.MAIL_MAX_MESSAGE_BYTES = 20_000
    huge = make_message(
        subject="Huge CV", attachments=[("cv.pdf", b"%PDF" + b"x" * 40_000, "application/pdf")]
    )
    small = make_message(subject="small")
    huge_uid, _ = server.add_message(huge), server.add_message(small)
    server.faults.gmail_quit = True
    mailbox = fault_mailbox(server, team.owner, deletion_policy=DeletionPolicy.AFTER_IMPORT)
    # This server lists TOP in CAPA but refuses it (TOP is optional, RFC 1939 §7): the
    # placeholder is recorded without headers and the session ends there, as after any error.
    report = poll(mailbox, server)
    assert (report.outcome, report.error_code, report.too_large) == (
        PollOutcome.ERROR,
        "protocol",
        1,
    )
    assert "TOP 1 0" in server.commands and len(server.messages) == 2
    report = poll(mailbox, server)  # the placeholder stands: TOP is not asked again
    assert (report.outcome, report.too_large, report.imported, report.deleted_on_server) == (
        PollOutcome.OK,
        0,
        1,
        1,
    )
    assert server.commands.count("TOP 1 0") == 1
    assert "RETR 1" not in server.commands  # never downloaded …
    assert [uid for uid, _raw in server.messages] == [huge_uid]  # … so even Gmail's QUIT leaves it
    placeholder = Message.objects.get(import_state=ImportState.PLACEHOLDER)
    assert "left on the server" in placeholder.snippet
    assert_safe(mailbox, server, [huge, small])
