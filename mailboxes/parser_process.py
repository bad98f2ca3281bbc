"""Parsing fetched mail in a second process, so that a big poll keeps both cores busy.

A first import is CPU-bound on Python's GIL: the polling thread reads TLS and parses, the commit
thread builds rows, and the two take turns on one core's worth of interpreter. The parse (the
stdlib's feed parser, decoding, HTML sanitising) and the raw file's creation move here, to a
child that ``subprocess.Popen`` starts as ``python -m mailboxes.parser_process``; the poll
sends it each raw message and reads back, in the same order, the ``ParsedMessage``, the
name of the raw file it wrote, the search text and (on PostgreSQL) its tsvector.

Why a plain subprocess: a Celery prefork child is a daemonic process, and ``multiprocessing``
refuses to start children from one ("daemonic processes are not allowed to have children");
``subprocess`` has no such rule, and it works the same under ``manage.py poll``, the Celery
worker and ``make run``. The child needs no database and no Django app registry: only
``settings.configure()`` for the storage class.

What stays true with it:

- the raw bytes are hashed, kept and committed by the poll as before; the child's file is
  written through Django's ``FileSystemStorage`` by the same ``mailboxes.mailstore.raw_store``
  (with any other storage, such as S3, the poll writes the file itself);
- the parent keeps every message it has sent until the result is back, so if the child dies
  or answers nonsense, ``ParserUnavailable`` tells the poll to parse in-process instead:
  nothing is lost, the poll only gets slower;
- the child reads until its stdin closes, which happens when the poll ends or its process dies
  (even by SIGKILL), so it never outlives the poll for long; ``close()`` reaps it.

The pipes carry frames of an 8-byte length and a pickle; both ends are this code, started
by the poll itself, so the pickles never come from anyone else.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickle
import re
import select
import struct
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mailboxes.parsing import ParsedMessage, parse_message

logger = logging.getLogger(__name__)

_FRAME = struct.Struct("!Q")
# How long the poll waits for one message's result before it gives up on the child and parses
# in-process (a parse takes about a millisecond; a pathological message in-process would take
# as long, but the poll then knows the child is not just wedged).
RESULT_TIMEOUT_SECONDS = 120.0


# What mailboxes.composing.new_message_id makes (email.utils.make_msgid: time, pid and a random
# number, dot-separated, then @domain), without <>.
_HUB_MESSAGE_ID = re.compile(r"\d+\.\d+\.\d+@[^@\s]+")


def raw_file_early(parsed: ParsedMessage, own_address: str) -> bool:
    """Whether to write a fetched message's raw file before its commit.

    Not for what may be the copy of a message the hub sent from this mailbox (a provider like
    Gmail hands it back over POP3): the commit stores that as a duplicate, without a file, and
    a file written early would stay unreferenced. Such a copy is the mailbox's own sent mail
    with a Message-ID of the hub's making; the owner's other sent mail (sent from a phone, a
    desktop client) is written early like everything else. A false alarm only leaves the
    write to the commit.
    """
    sender = parsed.sender
    if sender is None or sender.address != own_address:
        return True
    return _HUB_MESSAGE_ID.fullmatch(parsed.message_id) is None


class ParserUnavailable(Exception):
    """The child died, hung or failed: parse in-process from here on."""


@dataclass(frozen=True)
class FileStore:
    """Where the child writes raw files: a ``FileSystemStorage``'s own settings."""

    location: str
    file_permissions_mode: int | None
    directory_permissions_mode: int | None


@dataclass(frozen=True)
class ParseResult:
    parsed: ParsedMessage
    # The raw file the child wrote, or None: what may be the copy of a message the hub sent
    # (raw_file_early), a write that failed, or no FileStore (then the poll writes it).
    raw_name: str | None
    search_document: str  # mailboxes.search_index.parsed_message_document(parsed)
    # search_index.search_vector_binary(search_document), when the poll asked for it (the
    # database is PostgreSQL) and the document is one it can be built for; else None.
    search_vector: bytes | None = None


class ParserProcess:
    """The poll's side of the child: ``submit`` raw messages, ``result`` them back in order.

    One thread, no helper threads: the pipes are non-blocking on this side, and ``submit``
    reads whatever results have come while it writes, so neither pipe fills up with nobody
    reading it (the child may be writing a big result while it is sent the next big message).
    A reader thread would do the same, but every hand-over of the GIL between threads costs
    the polling thread up to the interpreter's switch interval (5 ms) when another thread is
    busy, which is most of the time in a poll.
    """

    def __init__(
        self, *, own_address: str, file_store: FileStore | None, search_vectors: bool = False
    ) -> None:
        self.file_store = file_store
        package_root = str(Path(__file__).resolve().parent.parent)
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            [package_root, *filter(None, [environment.get("PYTHONPATH")])]
        )
        self._process = subprocess.Popen(  # noqa: S603 -- our own module, no shell
            [sys.executable, "-m", "mailboxes.parser_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=environment,
            cwd=package_root,
            bufsize=0,
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._to_child = self._process.stdin.fileno()
        self._from_child = self._process.stdout.fileno()
        for descriptor in (self._to_child, self._from_child):
            _widen_pipe(descriptor)
        os.set_blocking(self._to_child, False)
        self._received = bytearray()  # bytes read from the child, not yet a whole frame
        self._results: deque[ParseResult] = deque()
        self._broken = False
        self._send(
            {"own_address": own_address, "file_store": file_store, "search_vectors": search_vectors}
        )

    def submit(self, raw: bytes, digest: str) -> None:
        """Send one message; raises ParserUnavailable if the child is gone."""
        self._send((raw, digest))

    def result(self) -> ParseResult:
        """The next submitted message's result, in submission order."""
        while not self._results:
            self._check()
            readable, _, _ = select.select([self._from_child], [], [], RESULT_TIMEOUT_SECONDS)
            if not readable:
                self._broken = True
                raise ParserUnavailable("the parser process did not answer in time")
            self._receive()
        return self._results.popleft()

    def result_ready(self) -> bool:
        """Whether ``result()`` would return without waiting (after taking what has come)."""
        if not self._results and not self._broken:
            readable, _, _ = select.select([self._from_child], [], [], 0)
            if readable:
                try:
                    self._receive()
                except ParserUnavailable:
                    return True  # result() raises it again
        return bool(self._results) or self._broken

    def close(self) -> None:
        """End the child and reap it (a child left unreaped stays a zombie of the worker)."""
        for stream in (self._process.stdin, self._process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass  # the child is gone already
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def _check(self) -> None:
        if self._broken:
            raise ParserUnavailable("the parser process stopped earlier")

    def _send(self, value: object) -> None:
        self._check()
        frame = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        pending = memoryview(_FRAME.pack(len(frame)) + frame)
        while pending:
            readable, writable, _ = select.select(
                [self._from_child], [self._to_child], [], RESULT_TIMEOUT_SECONDS
            )
            if readable:
                self._receive()
            if writable:
                try:
                    pending = pending[os.write(self._to_child, pending) :]
                except BlockingIOError:
                    continue
                except OSError as exc:  # BrokenPipeError: the child is gone
                    self._broken = True
                    raise ParserUnavailable(f"the parser process is gone ({exc})") from None
            if not readable and not writable:
                self._broken = True
                raise ParserUnavailable("the parser process stopped reading")

    def _receive(self) -> None:
        """Read what the child has written (it is readable), and keep every whole frame."""
        error: OSError | None = None
        try:
            chunk = os.read(self._from_child, 1 << 20)
        except OSError as exc:
            chunk, error = b"", exc
        if not chunk:
            self._broken = True
            raise ParserUnavailable(f"the parser process exited ({error or 'end of output'})")
        self._received += chunk
        while len(self._received) >= _FRAME.size:
            (length,) = _FRAME.unpack_from(self._received)
            if len(self._received) < _FRAME.size + length:
                break
            body = bytes(self._received[_FRAME.size : _FRAME.size + length])
            del self._received[: _FRAME.size + length]
            value = pickle.loads(body)  # noqa: S301 -- written by our own child (module docstring)
            if not isinstance(value, ParseResult):
                self._broken = True
                raise ParserUnavailable(f"the parser process sent {type(value).__name__}")
            self._results.append(value)


def _widen_pipe(descriptor: int) -> None:
    """Let a pipe hold 1 MB rather than 64 KB, where the system allows (fewer round trips)."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
    if set_size is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(descriptor, set_size, 1 << 20)


def _read_frame(stream: IO[bytes]) -> bytes | None:
    """One frame's body; None at a clean end of stream; EOFError if it ends mid-frame."""
    header = stream.read(_FRAME.size)
    if not header:
        return None
    if len(header) < _FRAME.size:
        raise EOFError("the stream ended inside a frame header")
    (length,) = _FRAME.unpack(header)
    body = stream.read(length)
    if len(body) < length:
        raise EOFError("the stream ended inside a frame")
    return body


# --- The child ----------------------------------------------------------------------------


def _child_main() -> int:
    from django.conf import settings

    # No database, no app registry, no translations: parsing and the storage class need none.
    settings.configure(USE_I18N=False)
    from django.core.files.storage import FileSystemStorage

    from mailboxes.mailstore import raw_store
    from mailboxes.search_index import parsed_message_document, search_vector_binary

    # One thread: read, parse, write the file, answer. (Threads here would trade the GIL at
    # every read and write; see ParserProcess.)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    first = _read_frame(stdin)
    if first is None:
        return 0
    config: dict[str, Any] = pickle.loads(first)  # noqa: S301 -- from our parent
    own_address: str = config["own_address"]
    file_store: FileStore | None = config["file_store"]
    search_vectors: bool = config.get("search_vectors", False)
    storage = (
        None
        if file_store is None
        else FileSystemStorage(
            location=file_store.location,
            file_permissions_mode=file_store.file_permissions_mode,
            directory_permissions_mode=file_store.directory_permissions_mode,
        )
    )
    while (body := _read_frame(stdin)) is not None:
        raw, digest = pickle.loads(body)  # noqa: S301 -- from our parent
        parsed = parse_message(raw)
        raw_name = None
        if storage is not None and raw_file_early(parsed, own_address):
            try:
                raw_name = raw_store(raw=raw, digest=digest, storage=storage)
            except OSError:
                logger.warning("raw file write failed in the parser process; left to the commit")
        document = parsed_message_document(parsed)
        result = ParseResult(
            parsed,
            raw_name,
            document,
            search_vector_binary(document) if search_vectors else None,
        )
        frame = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.write(_FRAME.pack(len(frame)) + frame)
        stdout.flush()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="parser process: %(levelname)s %(message)s")
    # Run the module's own copy, not __main__'s: results must pickle as
    # mailboxes.parser_process.ParseResult for the parent to read them.
    from mailboxes.parser_process import _child_main as child_main

    sys.exit(child_main())
