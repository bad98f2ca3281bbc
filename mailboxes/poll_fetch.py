"""Fetching and storing a poll's messages: RETR, parse, and commit in batches.

Each message is all-or-nothing; a batch that fails is retried one message at a time, and a
message that keeps failing is quarantined (``record_failure``) while the rest keep flowing.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.core.files.storage import FileSystemStorage, storages
from django.db import connection, transaction
from django.utils import timezone

from mailboxes.committer import BackgroundCommitter
from mailboxes.mailstore import content_hash, files_durable, raw_store
from mailboxes.models import Mailbox, ServerMessage, ServerMessageState, uid_digest
from mailboxes.parser_process import (
    FileStore,
    ParserProcess,
    ParserUnavailable,
    raw_file_early,
)
from mailboxes.parsing import ParsedMessage, parse_message
from mailboxes.poll_report import save_progress
from mailboxes.poll_session import SETTLED_STATES, PollSession, WantedMessage, keep_lease
from mailboxes.pop3_errors import MessageRefused, Pop3Error
from mailboxes.server_state import KnownUid
from mailboxes.storing import IncomingMessage, messages_store

logger = logging.getLogger(__name__)

BATCH_MESSAGES = 50
BATCH_BYTES = 16 * 1024 * 1024
# A poll with this many messages to fetch parses them in a second process; a smaller one is
# not worth starting it (a fraction of a second).
PARSER_PROCESS_FROM = 100
# At most this much in the parser process's hands at once (memory; the pipes are streamed).
PARSER_WINDOW_MESSAGES = 64
PARSER_WINDOW_BYTES = 16 * 1024 * 1024
# The interpreter's thread switch interval while a poll runs (_quick_thread_switches).
POLL_SWITCH_INTERVAL_SECONDS = 0.0005
# The early-written raw files of a batch are fsynced by this many threads at once: on ext4 the
# journal commits concurrent fsyncs together, about twice the files a second of one thread
# (measured: 0.13 ms against 0.27 ms a file), and the commit thread waited for them.
SYNC_THREADS = 4
# This many messages refused one after another (-ERR to RETR) end the poll as a server fault.
REFUSALS_IN_A_ROW_END_THE_POLL = 5
# When the server has sent nothing for this long (a slow or stalled RETR), what was retrieved
# before is parsed and committed without waiting for a full batch (_Flow's idle flush).
IDLE_FLUSH_SECONDS = 0.5


def fetch_and_store(session: PollSession, wanted: list[WantedMessage]) -> int:
    """RETR, parse and commit ``wanted`` in batches; return how many messages failed.

    A message the server refuses (-ERR to RETR) fails alone and the poll goes on; a lost
    connection ends it (Pop3Error), once the messages already retrieved are committed.

    Three things overlap in a big poll: this thread RETRs (TLS, hashing), a parser process
    parses and writes the raw files (``mailboxes.parser_process``, for PARSER_PROCESS_FROM
    messages or more), and each batch commits on a second thread while the next one is fetched
    (BackgroundCommitter). Every commit has ended, and the parser process is reaped, when this
    returns or raises.
    """

    def committed(batch: Sequence[IncomingMessage], failed: int) -> None:
        session.count_retrieved(-(len(batch) - failed))

    refused = 0
    refused_in_a_row = 0
    parser = _start_parser(session.mailbox) if len(wanted) >= PARSER_PROCESS_FROM else None
    # fsync of each batch's raw files, on threads of their own: the disk waits overlap the
    # previous batch's commit instead of adding to it (the commits are the poll's slower half).
    syncer = ThreadPoolExecutor(max_workers=SYNC_THREADS, thread_name_prefix="raw-sync")
    try:
        with (
            _quick_thread_switches(),
            BackgroundCommitter(
                lambda batch: _commit_once_durable(session, batch), committed
            ) as committer,
        ):
            flow = _Flow(session, committer, parser, syncer)
            with flow.idle_flush():
                for item in wanted:
                    try:
                        retrieved = _retrieve(session, item)
                    except MessageRefused:
                        # -ERR to RETR is a whole reply: no message data came, the session is in
                        # step, and the message is neither retrieved nor marked for deletion.
                        # RFC 1939 §7 has RETR answer -ERR with no message sent, and §6 removes
                        # only DELE-marked messages at QUIT, so this message does not stand in the
                        # way of QUIT (a provider that counts RETR'd messages as taken at QUIT
                        # never handed it out). It failed (counted towards its quarantine in
                        # _retrieve); the rest go on.
                        refused += 1
                        refused_in_a_row += 1
                        if refused_in_a_row >= REFUSALS_IN_A_ROW_END_THE_POLL:
                            # A server refusing everything is the server's problem, not each
                            # message's: end the poll (retried later) before every message on it
                            # collects a failure.
                            flow.finish()
                            raise
                        continue
                    except Pop3Error:
                        # The session is lost, but the messages retrieved before it are whole:
                        # commit them before giving up. Otherwise a message that always breaks the
                        # connection would keep every message batched before it from being
                        # committed, poll after poll.
                        flow.finish()
                        raise
                    refused_in_a_row = 0
                    if retrieved is not None:
                        flow.add(retrieved)
                flow.finish()
    finally:
        # Added here, once every commit has ended: the commit thread counts its failures in
        # the same report field.
        session.report.failed += refused
        syncer.shutdown(wait=True)
        if parser is not None:
            parser.close()
    return committer.failed + refused


@contextlib.contextmanager
def _quick_thread_switches() -> Iterator[None]:
    """Let the interpreter hand the GIL between threads every 0.5 ms for the poll, not 5 ms.

    The polling thread mostly waits on sockets and pipes, in many short waits (a RETR is a
    dozen TLS reads); each time it wakes while the commit thread runs Python, it waits for
    the switch interval before it may go on. At the default 5 ms that made its reads cost 2.5
    times what they cost alone (bench/ingest.py --profile). The setting is the process's: the
    poll is the only work of a worker process while it runs, and it is restored afterwards.
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, POLL_SWITCH_INTERVAL_SECONDS))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@dataclass
class _Retrieved:
    """A message's bytes, as RETR gave them, waiting for its parse."""

    item: WantedMessage
    raw: bytes
    digest: str
    uid: str
    existing: KnownUid | None


class _Flow:
    """Retrieved messages -> parsed (here or in the parser process) -> batches -> commits.

    In order: results come back from the parser process in the order sent, and batches commit
    one after another, so a message's place in the poll never changes.

    A batch commits when it is full, or, through the idle flush, when the server has sent
    nothing for IDLE_FLUSH_SECONDS: otherwise a slow or stalled server would keep up to a
    batch and a parser window of retrieved messages uncommitted (and "Fetch now" at 0) for as
    long as it stalls. The fetching thread and the idle flush take turns under ``_lock``; the
    flush only ever runs while the fetching thread waits for the server, outside the lock.
    """

    def __init__(
        self,
        session: PollSession,
        committer: BackgroundCommitter[IncomingMessage],
        parser: ParserProcess | None,
        syncer: ThreadPoolExecutor,
    ) -> None:
        self.session = session
        self.committer = committer
        self.parser = parser
        self.syncer = syncer
        self.in_parser: deque[_Retrieved] = deque()
        self.in_parser_bytes = 0
        self.batch: list[IncomingMessage] = []
        self.batch_bytes = 0
        self._lock = threading.Lock()
        self._last_added = time.monotonic()
        self._flush_error: BaseException | None = None

    @contextlib.contextmanager
    def idle_flush(self) -> Iterator[None]:
        """Run the idle flush on a thread of its own while the block runs.

        Not inside a transaction: there the commits run on the caller's thread and connection
        (BackgroundCommitter), which another thread must not use.
        """
        if transaction.get_connection().in_atomic_block:
            yield
            return
        stop = threading.Event()
        watcher = threading.Thread(
            target=self._flush_when_idle, args=(stop,), name="idle-flush", daemon=True
        )
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join()
        self._raise_flush_error()

    def _flush_when_idle(self, stop: threading.Event) -> None:
        while not stop.wait(IDLE_FLUSH_SECONDS / 2):
            if time.monotonic() - self._last_added < IDLE_FLUSH_SECONDS:
                continue
            if not self._lock.acquire(blocking=False):
                continue  # the fetching thread is adding: not idle
            try:
                if self._flush_error is None and (self.in_parser or self.batch):
                    self._drain()
            except BaseException as exc:  # noqa: BLE001 -- handed to the fetching thread
                self._flush_error = exc
            finally:
                self._last_added = time.monotonic()
                self._lock.release()

    def _raise_flush_error(self) -> None:
        error, self._flush_error = self._flush_error, None
        if error is not None:
            raise error

    def add(self, retrieved: _Retrieved) -> None:
        with self._lock:
            self._raise_flush_error()
            self._add(retrieved)
            self._last_added = time.monotonic()

    def _add(self, retrieved: _Retrieved) -> None:
        if self.parser is not None:
            try:
                self.parser.submit(retrieved.raw, retrieved.digest)
            except ParserUnavailable as exc:
                self._parse_here_from_now(exc)
            else:
                self.in_parser.append(retrieved)
                self.in_parser_bytes += len(retrieved.raw)
                # Take what is ready, and wait only when enough is in the parser's hands
                # (bounded, for memory): RETR the next message meanwhile.
                while self.in_parser and (
                    len(self.in_parser) > PARSER_WINDOW_MESSAGES
                    or self.in_parser_bytes > PARSER_WINDOW_BYTES
                    or self.parser.result_ready()
                ):
                    self._take_parsed()
                return
        self._batch(_parsed_here(self.session, retrieved))

    def finish(self) -> None:
        """Wait for every parse, and submit the last batch (its commit starts)."""
        with self._lock:
            self._raise_flush_error()
            self._drain()

    def _drain(self) -> None:
        while self.in_parser:
            self._take_parsed()
        self._submit()

    def _take_parsed(self) -> None:
        retrieved = self.in_parser.popleft()
        self.in_parser_bytes -= len(retrieved.raw)
        assert self.parser is not None
        try:
            result = self.parser.result()
        except ParserUnavailable as exc:
            self.in_parser.appendleft(retrieved)
            self.in_parser_bytes += len(retrieved.raw)
            self._parse_here_from_now(exc)
            return
        raw_name = (
            result.raw_name
            if self.parser.file_store is not None
            else _raw_store_early(
                self.session.mailbox, retrieved.raw, retrieved.digest, result.parsed
            )
        )
        self._batch(
            _incoming(
                retrieved, result.parsed, raw_name, result.search_document, result.search_vector
            )
        )

    def _parse_here_from_now(self, reason: ParserUnavailable) -> None:
        """The parser process failed: parse what it held, and what follows, in this process."""
        logger.warning(
            "mailbox %s: parsing in-process from here (%s)", self.session.mailbox.pk, reason
        )
        parser, self.parser = self.parser, None
        if parser is not None:
            parser.close()
        while self.in_parser:
            self._batch(_parsed_here(self.session, self.in_parser.popleft()))
        self.in_parser_bytes = 0

    def _batch(self, incoming: IncomingMessage) -> None:
        self.batch.append(incoming)
        self.batch_bytes += len(incoming.raw)
        if len(self.batch) >= BATCH_MESSAGES or self.batch_bytes >= BATCH_BYTES:
            self._submit()

    def _submit(self) -> None:
        batch = _Batch(self.batch)
        names = [incoming.raw_name for incoming in batch if incoming.raw_name]
        batch.durable = [
            self.syncer.submit(files_durable, names=names[start::SYNC_THREADS])
            for start in range(min(SYNC_THREADS, len(names)))
        ]
        self.committer.submit(batch)
        self.batch, self.batch_bytes = [], 0


def _start_parser(mailbox: Mailbox) -> ParserProcess | None:
    """A parser process for this poll, or None (then the poll parses in-process)."""
    storage = storages["default"]
    # Only Django's own FileSystemStorage is handed over (by its folder and modes): the child
    # has no Django settings, and a subclass or a remote storage may need them.
    file_store = (
        FileStore(
            location=str(storage.location),
            file_permissions_mode=storage.file_permissions_mode,
            directory_permissions_mode=storage.directory_permissions_mode,
        )
        if type(storage) is FileSystemStorage
        else None
    )
    try:
        return ParserProcess(
            own_address=mailbox.email_address,
            file_store=file_store,
            # The child writes the search entries' tsvectors too, so that PostgreSQL does not
            # parse their text inside the commit (search_index.search_vector_binary).
            search_vectors=connection.vendor == "postgresql",
        )
    except (OSError, ParserUnavailable):
        logger.exception("mailbox %s: no parser process; parsing in-process", mailbox.pk)
        return None


def _retrieve(session: PollSession, item: WantedMessage) -> _Retrieved | None:
    """RETR one message; None when it turns out to be already known (servers without UIDs)."""
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
    session.count_retrieved(1)
    digest = content_hash(raw)
    uid = item.uid if item.uid is not None else f"sha256:{digest}"
    existing = item.existing
    if item.uid is None:
        session.content_numbers[item.number] = uid
        if uid in session.content_uids:
            # The same bytes twice on a server without usable UIDs: the first copy's row and
            # message stand for both (a second row for the same content UID would break the
            # unique constraint and fail the commit of the whole batch).
            session.count_retrieved(-1)
            return None
        session.content_uids.add(uid)
        known = (
            ServerMessage.objects.filter(mailbox=session.mailbox, uid_hash=uid_digest(uid))
            .values_list("pk", "state")
            .first()
        )
        if known is not None and known[1] in SETTLED_STATES:
            session.count_retrieved(-1)  # already committed in an earlier poll
            return None
        existing = (
            None if known is None else KnownUid(known[0], known[1], 0, None, timezone.now(), None)
        )
    return _Retrieved(item=item, raw=raw, digest=digest, uid=uid, existing=existing)


def _parsed_here(session: PollSession, retrieved: _Retrieved) -> IncomingMessage:
    parsed = parse_message(retrieved.raw)
    raw_name = _raw_store_early(session.mailbox, retrieved.raw, retrieved.digest, parsed)
    return _incoming(retrieved, parsed, raw_name)


def _incoming(
    retrieved: _Retrieved,
    parsed: ParsedMessage,
    raw_name: str | None,
    search_document: str | None = None,
    search_vector: bytes | None = None,
) -> IncomingMessage:
    existing = retrieved.existing
    return IncomingMessage(
        uid=retrieved.uid,
        uid_hash=uid_digest(retrieved.uid),
        raw=retrieved.raw,
        digest=retrieved.digest,
        parsed=parsed,
        size=retrieved.item.size,
        existing_server_row=existing.pk if existing is not None else None,
        raw_name=raw_name,
        search_document=search_document,
        search_vector=search_vector,
    )


def _raw_store_early(
    mailbox: Mailbox, raw: bytes, digest: str, parsed: ParsedMessage
) -> str | None:
    """Write the raw file before the commit, so that the commit thread (it waits for the
    database) does not have to; None leaves it to the commit.

    Not for what may be the copy of a message the hub sent (``raw_file_early``): that is
    stored as a duplicate, without its file. A failure is left to the commit too, which
    writes again and, if that fails, fails this message alone. (The parser process applies
    the same rule when it writes the file.)
    """
    if not raw_file_early(parsed, mailbox.email_address):
        return None
    try:
        return raw_store(raw=raw, digest=digest)
    except OSError:
        return None


class _Batch(list[IncomingMessage]):
    """A batch on its way to the commit, with the fsync of its early-written raw files."""

    durable: list[Future[int]] | None = None  # files_durable of a share of its files, each


def _commit_once_durable(session: PollSession, batch: Sequence[IncomingMessage]) -> int:
    durable = getattr(batch, "durable", None)
    if durable:
        try:
            for share in durable:
                share.result()
        except OSError:
            # Left to the commit, which syncs every file it cannot vouch for and fails only the
            # messages whose files cannot be made durable.
            logger.warning("mailbox %s: raw files not synced early", session.mailbox.pk)
        else:
            for incoming in batch:
                incoming.raw_durable = incoming.raw_name is not None
    return _commit(session, list(batch))


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
    # session.retrieved_uncommitted is changed where batches are submitted (count_retrieved).
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
