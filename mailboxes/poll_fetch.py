"""Fetching and storing a poll's messages: RETR, parse, and commit in batches.

Each message is all-or-nothing; a batch that fails is retried one message at a time, and a
message that keeps failing is quarantined (``record_failure``) while the rest keep flowing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from mailboxes.committer import BackgroundCommitter
from mailboxes.mailstore import content_hash, raw_store
from mailboxes.models import Mailbox, ServerMessage, ServerMessageState, uid_digest
from mailboxes.parsing import ParsedMessage, parse_message
from mailboxes.poll_report import save_progress
from mailboxes.poll_session import SETTLED_STATES, PollSession, WantedMessage, keep_lease
from mailboxes.pop3_errors import MessageRefused, Pop3Error
from mailboxes.server_state import KnownUid
from mailboxes.storing import IncomingMessage, messages_store

logger = logging.getLogger(__name__)

BATCH_MESSAGES = 50
BATCH_BYTES = 16 * 1024 * 1024
# This many messages refused one after another (-ERR to RETR) end the poll as a server fault.
REFUSALS_IN_A_ROW_END_THE_POLL = 5


def fetch_and_store(session: PollSession, wanted: list[WantedMessage]) -> int:
    """RETR, parse and commit ``wanted`` in batches; return how many messages failed.

    A message the server refuses (-ERR to RETR) fails alone and the poll goes on; a lost
    connection ends it (Pop3Error), once the messages already retrieved are committed.

    Each batch commits on a second thread while the next one is fetched (BackgroundCommitter);
    every commit has ended when this returns or raises.
    """

    def committed(batch: Sequence[IncomingMessage], failed: int) -> None:
        session.retrieved_uncommitted -= len(batch) - failed

    batch: list[IncomingMessage] = []
    batch_bytes = 0
    refused = 0
    refused_in_a_row = 0
    try:
        with BackgroundCommitter(
            lambda batch: _commit(session, list(batch)), committed
        ) as committer:
            for item in wanted:
                try:
                    incoming = _retrieve(session, item)
                except MessageRefused:
                    # -ERR to RETR is a whole reply: no message data came, the session is in step,
                    # and the message is neither retrieved nor marked for deletion. RFC 1939 §7
                    # has RETR answer -ERR with no message sent, and §6 removes only DELE-marked
                    # messages at QUIT, so this message does not stand in the way of QUIT (a
                    # provider that counts RETR'd messages as taken at QUIT never handed it out).
                    # It failed (counted towards its quarantine in _retrieve); the rest go on.
                    refused += 1
                    refused_in_a_row += 1
                    if refused_in_a_row >= REFUSALS_IN_A_ROW_END_THE_POLL:
                        # A server refusing everything is the server's problem, not each
                        # message's: end the poll (retried later) before every message on it
                        # collects a failure.
                        committer.submit(batch)
                        raise
                    continue
                except Pop3Error:
                    # The session is lost, but the messages retrieved before it are whole: commit
                    # them before giving up. Otherwise a message that always breaks the connection
                    # would keep every message batched before it from being committed, poll after
                    # poll.
                    committer.submit(batch)
                    raise
                refused_in_a_row = 0
                if incoming is None:
                    continue
                batch.append(incoming)
                batch_bytes += len(incoming.raw)
                if len(batch) >= BATCH_MESSAGES or batch_bytes >= BATCH_BYTES:
                    committer.submit(batch)
                    batch, batch_bytes = [], 0
            committer.submit(batch)
    finally:
        # Added here, once every commit has ended: the commit thread counts its failures in
        # the same report field.
        session.report.failed += refused
    return committer.failed + refused


def _retrieve(session: PollSession, item: WantedMessage) -> IncomingMessage | None:
    assert session.pop is not None
    keep_lease(session)
    try:
        raw = session.pop.retrieve(item.number)
    except Pop3Error as error:
        if item.uid is not None:
            # The server failed on this message: count it against the message, so a message
            # that always breaks the connection (or is always refused) is quarantined instead
            # of blocking the mailbox. Without a UID there is nothing to count it against
            # (its content hash needs its bytes): it is simply tried again next poll.
            record_failure(session.mailbox, item.uid, item.size, error.detail or error.code)
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


def _commit(session: PollSession, batch: list[IncomingMessage]) -> int:
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
            record_failure(
                session.mailbox, incoming.uid, incoming.size, "the message could not be stored"
            )
            session.report.failed += 1
            return 1
        logger.warning(
            "mailbox %s: a batch of %d failed; retrying one by one", session.mailbox.pk, len(batch)
        )
    return sum(_commit(session, [incoming]) for incoming in batch)


def _count(session: PollSession, outcome: object, size: int) -> None:
    report = session.report
    report.imported += outcome.imported  # type: ignore[attr-defined]
    report.duplicates += outcome.duplicates  # type: ignore[attr-defined]
    # session.retrieved_uncommitted is the fetching thread's to change (_fetch_and_store).
    save_progress(report)


def record_failure(mailbox: Mailbox, uid: str, size: int, error: str) -> None:
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
