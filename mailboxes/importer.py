"""One poll of one mailbox: the import pipeline of ../shared/DESIGN.md.

lease → connect → authenticate → UIDL → diff against known UIDs (one query) → for each new
message RETR, parse, and commit (in batches; each message all-or-nothing) → deletion policy
(DELE only committed UIDs) → QUIT only if every retrieved message is committed, else drop the
connection so the server deletes nothing (RFC 1939 §6: deletions happen only in the UPDATE
state, which QUIT starts) → record the outcome.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.parser import BytesHeaderParser
from email.utils import parsedate_to_datetime

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from mailboxes.committer import BackgroundCommitter
from mailboxes.leases import lease_acquire, lease_release, lease_renew
from mailboxes.mailstore import content_hash, raw_store
from mailboxes.models import (
    FirstImportScope,
    ImportState,
    Mailbox,
    MailboxStatus,
    Message,
    MessageOrigin,
    PollOutcome,
    PollReport,
    ServerMessage,
    ServerMessageState,
    uid_digest,
)
from mailboxes.parsing import ParsedMessage, parse_message
from mailboxes.pop3 import Pop3Session, open_pop3_session
from mailboxes.pop3_errors import Pop3Error
from mailboxes.search_index import message_search_index
from mailboxes.server_state import KnownUid, deletions_due, known_uids, mark_gone
from mailboxes.storing import IncomingMessage, messages_store

logger = logging.getLogger(__name__)

BATCH_MESSAGES = 50
BATCH_BYTES = 16 * 1024 * 1024
BACKOFF_BASE_SECONDS = 60
BACKOFF_MAX_SECONDS = 60 * 60
# UIDs the server lists but the hub will not fetch again.
SETTLED_STATES = {
    ServerMessageState.IMPORTED,
    ServerMessageState.DUPLICATE,
    ServerMessageState.OUT_OF_SCOPE,
    ServerMessageState.TOO_LARGE,
    ServerMessageState.QUARANTINED,
}


class LeaseLost(Exception):
    """Another worker took the mailbox over (our lease expired): stop without QUIT."""


@dataclass
class _Wanted:
    """A message on the server that this poll will fetch."""

    number: int
    uid: str | None  # None: no usable UID (no UIDL, or a UID the server lists twice)
    size: int
    existing: KnownUid | None = None


@dataclass
class _Session:
    mailbox: Mailbox
    report: PollReport
    lease_token: str
    pop: Pop3Session | None = None
    retrieved_uncommitted: int = 0
    # Content UIDs ("sha256:…") retrieved in this session, for servers without usable UIDs.
    content_uids: set[str] = field(default_factory=set)
    lease_renewed_at: float = field(default_factory=time.monotonic)


def mailbox_poll(*, mailbox_id: int) -> PollReport | None:
    """Poll one mailbox now. Returns its report, or None if another worker is polling it."""
    token = lease_acquire(mailbox_id=mailbox_id)
    if token is None:
        logger.info("poll skipped: mailbox %s is being polled by another worker", mailbox_id)
        return None
    try:
        mailbox = Mailbox.objects.select_related("organization", "owner").get(pk=mailbox_id)
        report = PollReport.objects.create(mailbox=mailbox)
        session = _Session(mailbox=mailbox, report=report, lease_token=token)
        try:
            _poll(session)
        except Pop3Error as error:
            _finish_failed(
                session, code=error.code, message=str(error.user_message), detail=error.detail
            )
        except LeaseLost:
            _finish_failed(
                session,
                code="lease_lost",
                message=_("Another worker took over this poll; it will continue there."),
                detail="lease lost",
            )
        except Exception:
            logger.exception("poll of mailbox %s failed unexpectedly", mailbox_id)
            _finish_failed(
                session,
                code="internal",
                message=_(
                    "An internal error stopped this poll. The operator can see the details in the worker's log."
                ),
                detail="internal error",
            )
        finally:
            if session.pop is not None:
                session.pop.abort()
        return report
    finally:
        lease_release(mailbox_id=mailbox_id, token=token)


def _poll(session: _Session) -> None:
    mailbox, report = session.mailbox, session.report
    session.pop = open_pop3_session(
        host=mailbox.pop3_host,
        port=mailbox.pop3_port,
        security=mailbox.pop3_security,
        username=mailbox.pop3_username,
        password=mailbox.pop3_password(),
        accept_self_signed=mailbox.accept_self_signed,
    )
    pop = session.pop
    sizes = pop.sizes()
    uids = pop.uidl()
    report.on_server = len(sizes)
    known = known_uids(mailbox)
    wanted = _plan(session, sizes, uids, known)
    report.new = len(wanted)
    _save_progress(report)
    failed = _fetch_and_store(session, wanted)
    to_delete = deletions_due(
        mailbox, pop_uids=uids, known=known_uids(mailbox) if wanted else known
    )
    all_committed = session.retrieved_uncommitted == 0
    if all_committed:
        for number in to_delete.values():
            pop.delete(number)
        pop.quit()  # RFC 1939 §6: the DELEs above take effect now, and only now.
        session.pop = None
        if to_delete:
            ServerMessage.objects.filter(pk__in=list(to_delete)).update(
                deleted_from_server_at=timezone.now()
            )
            report.deleted_on_server = len(to_delete)
    mark_gone(mailbox, uids, known)
    if mailbox.first_import_pending:
        Mailbox.objects.filter(pk=mailbox.pk).update(first_import_pending=False)
    _finish_ok(session, failed=failed)


def _plan(
    session: _Session,
    sizes: dict[int, int],
    uids: dict[int, str] | None,
    known: dict[str, KnownUid],
) -> list[_Wanted]:
    """Which messages to fetch, oldest first; records out-of-scope and too-large ones as known."""
    mailbox = session.mailbox
    if uids is None:
        # No UIDL: every message is fetched and identified by a hash of its bytes.
        return [_Wanted(number=n, uid=None, size=sizes[n]) for n in sorted(sizes)]
    counts: dict[str, int] = {}
    for uid in uids.values():
        counts[uid] = counts.get(uid, 0) + 1
    wanted: list[_Wanted] = []
    for number in sorted(sizes):
        uid = uids.get(number)
        if uid is None or counts[uid] > 1:
            # A UID listed twice (a broken server) identifies nothing: fall back to content.
            wanted.append(_Wanted(number=number, uid=None, size=sizes[number]))
            continue
        row = known.get(uid_digest(uid))
        if row is not None and row.state in SETTLED_STATES and row.deleted_from_server_at is None:
            continue
        wanted.append(_Wanted(number=number, uid=uid, size=sizes[number], existing=row))
    if mailbox.first_import_pending and mailbox.first_import_scope != FirstImportScope.ALL:
        wanted = _apply_first_import_scope(session, wanted, sizes)
    too_large = [
        w for w in wanted if w.size > settings.MAIL_MAX_MESSAGE_BYTES and w.uid is not None
    ]
    for item in too_large:
        _record_too_large(session, item)
    return [w for w in wanted if w not in too_large]


def _apply_first_import_scope(
    session: _Session, wanted: list[_Wanted], sizes: dict[int, int]
) -> list[_Wanted]:
    mailbox, pop = session.mailbox, session.pop
    assert pop is not None
    keep: list[_Wanted] = []
    skipped: list[_Wanted] = []
    if mailbox.first_import_scope == FirstImportScope.NEWEST:
        newest = (
            set(sorted(sizes)[-(mailbox.first_import_newest or 0) :])
            if mailbox.first_import_newest
            else set()
        )
        for item in wanted:
            (keep if item.number in newest else skipped).append(item)
    else:  # SINCE_DATE: ask each message's headers (TOP n 0) for its Date.
        since = mailbox.first_import_since
        for item in wanted:
            date = _header_date(pop.top(item.number, 0))
            (
                skipped if date is not None and since is not None and date.date() < since else keep
            ).append(item)
    rows = [
        ServerMessage(
            mailbox=mailbox,
            uid=item.uid,
            uid_hash=uid_digest(item.uid),
            size=item.size,
            state=ServerMessageState.OUT_OF_SCOPE,
        )
        for item in skipped
        if item.uid is not None and item.existing is None
    ]
    ServerMessage.objects.bulk_create(rows, ignore_conflicts=True)
    session.report.skipped = len(rows)
    return keep + [item for item in skipped if item.uid is None]


def _header_date(header_bytes: bytes) -> datetime | None:
    try:
        value = BytesHeaderParser().parsebytes(header_bytes).get("Date")
        return parsedate_to_datetime(str(value)) if value else None
    except (TypeError, ValueError, IndexError):
        return None


def _record_too_large(session: _Session, item: _Wanted) -> None:
    """Leave the message on the server and show a placeholder that says so."""
    mailbox, pop = session.mailbox, session.pop
    assert pop is not None and item.uid is not None
    subject, sender = "", ""
    refused: Pop3Error | None = None
    # TOP is optional (RFC 1939 §7): a server whose CAPA leaves it out is not asked.
    if not pop.capabilities() or "TOP" in pop.capabilities():
        try:
            headers = BytesHeaderParser().parsebytes(pop.top(item.number, 0))
            subject = str(headers.get("Subject", ""))[:900]
            sender = str(headers.get("From", ""))[:250]
        except Pop3Error as error:
            # Some servers refuse TOP although they list it. Record the placeholder anyway,
            # so the next poll neither asks again nor stops here for ever (which would block
            # the whole mailbox), then end this session as after any POP3 error.
            refused = error
        except Exception:  # headers are only a courtesy here; the placeholder stands without them
            subject, sender = "", ""
    megabytes = item.size / (1024 * 1024)
    limit = settings.MAIL_MAX_MESSAGE_BYTES / (1024 * 1024)
    with transaction.atomic():
        message = Message.objects.create(
            organization_id=mailbox.organization_id,
            owner_id=mailbox.owner_id,
            mailbox=mailbox,
            origin=MessageOrigin.POP3,
            import_state=ImportState.PLACEHOLDER,
            subject=subject,
            from_name=sender,
            raw_size=item.size,
            snippet=_(
                "This message is %(size).1f MB, over the %(limit).0f MB limit. It was left on the server."
            )
            % {"size": megabytes, "limit": limit},
        )
        ServerMessage.objects.update_or_create(
            mailbox=mailbox,
            uid_hash=uid_digest(item.uid),
            defaults={
                "uid": item.uid,
                "state": ServerMessageState.TOO_LARGE,
                "size": item.size,
                "message": message,
            },
        )
        message_search_index(message_ids=[message.pk])
    session.report.too_large += 1
    if refused is not None:
        raise refused


def _fetch_and_store(session: _Session, wanted: list[_Wanted]) -> int:
    """RETR, parse and commit ``wanted`` in batches; return how many messages failed.

    Each batch commits on a second thread while the next one is fetched (BackgroundCommitter);
    every commit has ended when this returns or raises.
    """

    def committed(batch: Sequence[IncomingMessage], failed: int) -> None:
        session.retrieved_uncommitted -= len(batch) - failed

    batch: list[IncomingMessage] = []
    batch_bytes = 0
    with BackgroundCommitter(lambda batch: _commit(session, list(batch)), committed) as committer:
        for item in wanted:
            try:
                incoming = _retrieve(session, item)
            except Pop3Error:
                # The session is lost, but the messages retrieved before it are whole: commit
                # them before giving up. Otherwise a message that always breaks the connection
                # would keep every message batched before it from being committed, poll after
                # poll.
                committer.submit(batch)
                raise
            if incoming is None:
                continue
            batch.append(incoming)
            batch_bytes += len(incoming.raw)
            if len(batch) >= BATCH_MESSAGES or batch_bytes >= BATCH_BYTES:
                committer.submit(batch)
                batch, batch_bytes = [], 0
        committer.submit(batch)
    return committer.failed


def _retrieve(session: _Session, item: _Wanted) -> IncomingMessage | None:
    assert session.pop is not None
    _keep_lease(session)
    try:
        raw = session.pop.retrieve(item.number)
    except Pop3Error as error:
        if item.uid is not None:
            # The server failed on this message: count it against the message, so a message
            # that always breaks the connection is quarantined instead of blocking the mailbox.
            _record_failure(session.mailbox, item.uid, item.size, error.detail or error.code)
        raise
    session.retrieved_uncommitted += 1
    digest = content_hash(raw)
    uid = item.uid if item.uid is not None else f"sha256:{digest}"
    existing = item.existing
    if item.uid is None:
        if uid in session.content_uids:
            # The same bytes twice on a server without usable UIDs: the first copy's row and
            # message stand for both (a second row for the same content UID would break the
            # unique constraint and fail the commit of the whole batch).
            session.retrieved_uncommitted -= 1
            return None
        session.content_uids.add(uid)
        known = (
            ServerMessage.objects.filter(mailbox=session.mailbox, uid_hash=uid_digest(uid))
            .values_list("pk", "state")
            .first()
        )
        if known is not None and known[1] in SETTLED_STATES:
            session.retrieved_uncommitted -= 1  # already committed in an earlier poll
            return None
        existing = (
            None if known is None else KnownUid(known[0], known[1], 0, None, timezone.now(), None)
        )
    parsed = parse_message(raw)
    return IncomingMessage(
        uid=uid,
        uid_hash=uid_digest(uid),
        raw=raw,
        digest=digest,
        parsed=parsed,
        size=item.size,
        existing_server_row=existing.pk if existing is not None else None,
        raw_name=_raw_store_early(session.mailbox, raw, digest, parsed),
    )


def _raw_store_early(
    mailbox: Mailbox, raw: bytes, digest: str, parsed: ParsedMessage
) -> str | None:
    """Write the raw file here, on the fetching thread, so that the commit thread (the import's
    slower half: it waits for the database) does not have to; None leaves it to the commit.

    Not for the mailbox's own sent mail, which may be the copy of a message the hub sent: that
    is stored as a duplicate, without its file. A failure is left to the commit too, which
    writes again and, if that fails, fails this message alone.
    """
    sender = parsed.sender
    if sender is not None and sender.address == mailbox.email_address:
        return None
    try:
        return raw_store(raw=raw, digest=digest)
    except OSError:
        return None


def _commit(session: _Session, batch: list[IncomingMessage]) -> int:
    """Commit a batch; if it fails, commit its messages one by one to isolate the bad one."""
    if not batch:
        return 0
    try:
        _count(session, messages_store(mailbox=session.mailbox, batch=batch), len(batch))
        return 0
    except Exception:
        if len(batch) == 1:
            incoming = batch[0]
            logger.exception(
                "mailbox %s: message %s failed to commit", session.mailbox.pk, incoming.uid[:80]
            )
            _record_failure(
                session.mailbox, incoming.uid, incoming.size, "the message could not be stored"
            )
            session.report.failed += 1
            return 1
        logger.warning(
            "mailbox %s: a batch of %d failed; retrying one by one", session.mailbox.pk, len(batch)
        )
    return sum(_commit(session, [incoming]) for incoming in batch)


def _count(session: _Session, outcome: object, size: int) -> None:
    report = session.report
    report.imported += outcome.imported  # type: ignore[attr-defined]
    report.duplicates += outcome.duplicates  # type: ignore[attr-defined]
    # session.retrieved_uncommitted is the fetching thread's to change (_fetch_and_store).
    _save_progress(report)


def _record_failure(mailbox: Mailbox, uid: str, size: int, error: str) -> None:
    """Count a failure against a UID; after a few it goes to the quarantine the owner sees."""
    with transaction.atomic():
        row, _ = ServerMessage.objects.select_for_update().get_or_create(
            mailbox=mailbox,
            uid_hash=uid_digest(uid),
            defaults={"uid": uid, "state": ServerMessageState.FAILED, "size": size},
        )
        row.failures += 1
        row.last_error = error[:500]
        row.state = (
            ServerMessageState.QUARANTINED
            if row.failures >= settings.MAIL_QUARANTINE_AFTER_FAILURES
            else ServerMessageState.FAILED
        )
        row.save(update_fields=["failures", "last_error", "state"])


def _keep_lease(session: _Session) -> None:
    """Renew the lease once a third of it has passed; stop if another worker took it."""
    if time.monotonic() - session.lease_renewed_at < settings.MAIL_POLL_LEASE_SECONDS / 3:
        return
    if not lease_renew(mailbox_id=session.mailbox.pk, token=session.lease_token):
        raise LeaseLost()
    session.lease_renewed_at = time.monotonic()


def _save_progress(report: PollReport) -> None:
    report.save(
        update_fields=[
            "on_server",
            "new",
            "imported",
            "duplicates",
            "too_large",
            "failed",
            "skipped",
            "quarantined",
        ]
    )


def _next_poll_interval(mailbox: Mailbox) -> timedelta:
    return timedelta(seconds=mailbox.organization.poll_interval_seconds)


def backoff_delay(failures: int) -> timedelta:
    """Exponential back-off with jitter: 1, 2, 4 … minutes, capped at an hour, each ±50%."""
    base = min(BACKOFF_BASE_SECONDS * 2 ** max(failures - 1, 0), BACKOFF_MAX_SECONDS)
    return timedelta(seconds=base * random.uniform(0.5, 1.5))


def _finish_ok(session: _Session, *, failed: int) -> None:
    mailbox, report = session.mailbox, session.report
    now = timezone.now()
    report.quarantined = _quarantined_count(mailbox)
    report.outcome = PollOutcome.PARTIAL if failed else PollOutcome.OK
    if failed:
        report.error_message = ngettext(
            "%(count)d message could not be stored; it will be retried.",
            "%(count)d messages could not be stored; they will be retried.",
            failed,
        ) % {"count": failed}
    report.finished_at = now
    report.save()
    Mailbox.objects.filter(pk=mailbox.pk).update(
        status=MailboxStatus.OK,
        status_code="",
        status_message=report.error_message,
        status_changed_at=now,
        consecutive_failures=0,
        last_poll_at=now,
        next_poll_at=now + _next_poll_interval(mailbox),
    )
    logger.info(
        "poll of mailbox %s: on server %d, new %d, imported %d, duplicates %d, too large %d, failed %d, deleted %d",
        mailbox.pk,
        report.on_server,
        report.new,
        report.imported,
        report.duplicates,
        report.too_large,
        report.failed,
        report.deleted_on_server,
    )


def _quarantined_count(mailbox: Mailbox) -> int:
    return ServerMessage.objects.filter(
        mailbox=mailbox, state=ServerMessageState.QUARANTINED
    ).count()


def _finish_failed(session: _Session, *, code: str, message: str, detail: str) -> None:
    mailbox, report = session.mailbox, session.report
    now = timezone.now()
    auth = code == "auth_failed"
    # A failed poll is often the one that quarantined a message (its RETR broke the session
    # once too often): its report shows that, as a completed poll's does.
    report.quarantined = _quarantined_count(mailbox)
    report.outcome = PollOutcome.AUTH_FAILED if auth else PollOutcome.ERROR
    report.error_code, report.error_message, report.finished_at = code, message, now
    report.save()
    logger.warning("poll of mailbox %s failed: %s (%s)", mailbox.pk, code, detail)
    failures = mailbox.consecutive_failures + 1
    Mailbox.objects.filter(pk=mailbox.pk).update(
        status=MailboxStatus.AUTH_FAILED if auth else MailboxStatus.ERROR,
        status_code=code,
        status_message=message,
        status_changed_at=now,
        last_poll_at=now,
        consecutive_failures=F("consecutive_failures") + 1,
        next_poll_at=now + backoff_delay(failures),
    )
