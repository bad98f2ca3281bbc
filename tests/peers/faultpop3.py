"""A small POP3 server on loopback that misbehaves on request, for testing the POP3 client.

It speaks enough RFC 1939 for a fetcher (USER, PASS, CAPA, STAT, LIST, UIDL, RETR, DELE, RSET,
NOOP, QUIT, and STLS from RFC 2595 when given a TLS context) over a mailbox held in memory,
and keeps RFC 1939's promise that matters most: DELE only marks, QUIT commits (§6 UPDATE
state), and a connection that ends any other way deletes nothing.

Faults are switched on through ``server.faults`` (a ``Faults``) and may be changed between
sessions. Two "faults" are mailbox contents rather than switches:

- reused UIDs: ``add_message(raw, uid="same")`` twice, or again after the first was deleted;
- a 100 KB line: ``add_message(long_line_message())``.

Assertions read ``server.messages`` (what is on the server now), ``server.deleted_uids``
(what QUIT removed, in order; ``deleted_messages`` their bytes) and ``server.commands`` (every command line received, PASS
included: these are test credentials).
"""

from __future__ import annotations

import itertools
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

CRLF = b"\r\n"


@dataclass
class Faults:
    """What the server does wrong. Command names are upper-case POP3 verbs."""

    drop_mid_retr: int | None = None  # RETR n: send +OK and half the message, then hang up
    stall_at: str | None = (
        None  # before answering this command ("RETR", "RETR 60" or "GREETING"), go silent
    )
    stall_seconds: float = 0.0
    stall_mid_retr: bool = False  # with stall_at="RETR": send half the message, then go silent
    # Reply this line instead of the normal answer. Key: "PASS", "RETR 2" for one message, or
    # "GREETING" for the first line the server sends.
    err_on: dict[str, str] = field(default_factory=dict)
    no_uidl: bool = False  # UIDL answers -ERR and CAPA does not list it
    no_capa: bool = False  # CAPA answers -ERR (a pre-RFC 2449 server)
    renumber: bool = False  # each session numbers the messages differently (rotated order)
    gmail_quit: bool = False  # at QUIT, every RETR'd message goes too, DELE'd or not
    drop_before_quit: bool = False  # on QUIT, hang up without answering or committing
    advertise_stls: bool = False  # list STLS in CAPA (STLS itself needs a tls_context)


@dataclass
class _Stored:
    key: int  # identity: UIDs may repeat, so they cannot identify a stored message
    uid: str
    raw: bytes


class FaultPop3Server:
    """The server. ``start()`` binds 127.0.0.1 on a free port; ``stop()`` ends every session.

    ``tls_context`` (a server-side ssl.SSLContext with a certificate) enables STLS, or, with
    ``implicit_tls=True``, TLS from the first byte as on port 995.
    """

    def __init__(
        self,
        *,
        username: str = "alice",
        password: str = "secret",  # noqa: S107 - a test server's test account
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
    ) -> None:
        self.username = username
        self.password = password
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls
        self.ca_file: str | None = None  # set by the fixture: the CA that verifies the cert
        self.faults = Faults()
        self.host = "127.0.0.1"
        self.port = 0
        self.commands: list[str] = []
        self.deleted_uids: list[str] = []
        self.deleted_messages: list[bytes] = []  # their bytes, in the same order
        self.connections = 0  # TCP connections accepted (a refused host check makes none)
        self.sessions_started = 0  # successful logins
        self._stored: list[_Stored] = []
        self._keys = itertools.count(1)
        self._state = threading.Lock()  # guards the mailbox, the logs and the maildrop lock
        self._maildrop_locked = False
        self._stopping = threading.Event()
        self._clients: set[socket.socket] = set()
        self._server: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None

    # -- the mailbox ------------------------------------------------------------------------

    def add_message(self, raw: bytes, uid: str | None = None) -> str:
        """Append a message (CRLF line ends) and return its UID (generated when not given)."""
        with self._state:
            key = next(self._keys)
            stored = _Stored(key=key, uid=uid if uid is not None else f"uid-{key:04d}", raw=raw)
            self._stored.append(stored)
            return stored.uid

    @property
    def messages(self) -> list[tuple[str, bytes]]:
        """(uid, raw) of every message on the server now, in arrival order."""
        with self._state:
            return [(stored.uid, stored.raw) for stored in self._stored]

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until every session has ended (and so committed, or not, what it would)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._state:
                if not self._clients:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError("a fault POP3 session is still open")
            time.sleep(0.005)

    # -- running ----------------------------------------------------------------------------

    def start(self) -> FaultPop3Server:
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                _Session(owner, self.request).run()

        server = socketserver.ThreadingTCPServer((self.host, 0), Handler, bind_and_activate=True)
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits up to one interval
            name="fault-pop3",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._state:
            clients = list(self._clients)
        for client in clients:
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            client.close()

    # -- used by sessions -------------------------------------------------------------------

    def _snapshot(self) -> list[_Stored] | None:
        """Lock the maildrop and return its messages in this session's numbering."""
        with self._state:
            if self._maildrop_locked:
                return None
            self._maildrop_locked = True
            self.sessions_started += 1
            snapshot = list(self._stored)
            if self.faults.renumber and snapshot:
                turn = self.sessions_started % len(snapshot)
                snapshot = snapshot[turn:] + snapshot[:turn]
            return snapshot

    def _commit(self, removed: list[_Stored]) -> None:
        """RFC 1939 §6 UPDATE state: remove ``removed`` from the maildrop."""
        keys = {stored.key for stored in removed}
        with self._state:
            self._stored = [stored for stored in self._stored if stored.key not in keys]
            self.deleted_uids.extend(stored.uid for stored in removed)
            self.deleted_messages.extend(stored.raw for stored in removed)

    def _release(self) -> None:
        with self._state:
            self._maildrop_locked = False


def long_line_message(length: int = 100_000) -> bytes:
    """A message whose body is one line of ``length`` characters (no base64, no wrapping)."""
    return (
        b"From: sender@example.com\r\nTo: alice@example.com\r\nSubject: long line\r\n\r\n"
        + b"x" * length
        + b"\r\nend\r\n"
    )


def stuffed(raw: bytes) -> bytes:
    """``raw`` as a RETR body: RFC 1939 §3 dot-stuffing and the "." terminator.

    Line ends are sent as stored, so a message stored with bare LF goes out like a sloppy
    server would send it; a last line without an end gets CRLF.
    """
    lines = [line if line.endswith(b"\n") else line + CRLF for line in _split_on_lf(raw)]
    return b"".join(b"." + line if line.startswith(b".") else line for line in lines) + b"." + CRLF


def _split_on_lf(raw: bytes) -> list[bytes]:
    # Not bytes.splitlines(): that also splits on a lone CR, \x0b, \x0c and more.
    parts = raw.split(b"\n")
    lines = [part + b"\n" for part in parts[:-1]]
    return lines + ([parts[-1]] if parts[-1] else [])


class _HangUp(Exception):
    """End the session now, without committing anything."""


class _Session:
    """One client connection, from greeting to QUIT or hang-up."""

    def __init__(self, server: FaultPop3Server, sock: socket.socket) -> None:
        self.server = server
        self.faults = server.faults
        self.raw_sock = sock  # kept apart: stop() shuts this one down to wake a blocked read
        self.sock = sock
        self.reader = sock.makefile("rb")
        self.tls = False
        self.user: str | None = None
        self.messages: list[_Stored] | None = None  # None until signed in
        self.marked: set[int] = set()  # message numbers (1-based)
        self.retrieved: set[int] = set()

    def run(self) -> None:
        self.sock.settimeout(30)  # never hold a thread forever when a test forgets a client
        # A reply is often two writes (status line, then body): without this, Nagle's algorithm
        # and the client's delayed ACK add ~40 ms to every command.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server._state:
            self.server._clients.add(self.raw_sock)
            self.server.connections += 1
        try:
            if self.server.implicit_tls:
                self._start_tls()
            self._stall("GREETING")
            self._send(self.faults.err_on.get("GREETING", "+OK FaultPOP3 ready").encode())
            while True:
                line = self.reader.readline(4096)
                if not line:
                    raise _HangUp  # client went away: nothing is committed
                self._dispatch(line.rstrip(b"\r\n").decode("utf-8", "replace"))
        except (_HangUp, OSError, ssl.SSLError):
            pass
        finally:
            if self.messages is not None:
                self.server._release()
            with self.server._state:
                self.server._clients.discard(self.raw_sock)
            try:
                self.sock.close()
            except OSError:
                pass

    def _dispatch(self, line: str) -> None:
        with self.server._state:
            self.server.commands.append(line)
        verb, _, argument = line.partition(" ")
        verb = verb.upper()
        if not self.faults.stall_mid_retr:
            # "RETR" stalls every RETR; "RETR 60" only the RETR of message 60.
            for at in (verb, f"{verb} {argument}".strip()):
                if self.faults.stall_at == at:
                    self._stall(at)
        override = self.faults.err_on.get(f"{verb} {argument}".strip()) or self.faults.err_on.get(
            verb
        )
        if override is not None:
            self._send(override.encode())
            return
        if verb == "QUIT":
            self._quit()
        handler = getattr(
            self, f"_{'auth' if self.messages is None else 'txn'}_{verb.lower()}", None
        )
        if handler is None:
            self._send(b"-ERR unknown command or wrong state")
        else:
            handler(argument)

    # -- AUTHORIZATION state ------------------------------------------------------------

    def _auth_capa(self, _argument: str) -> None:
        self._capa()

    def _auth_stls(self, _argument: str) -> None:
        if self.tls or not self.faults.advertise_stls or self.server.tls_context is None:
            self._send(b"-ERR STLS not available")
            return
        self._send(b"+OK Begin TLS negotiation")
        self._start_tls()

    def _auth_user(self, argument: str) -> None:
        self.user = argument
        self._send(b"+OK")

    def _auth_pass(self, argument: str) -> None:
        if self.user != self.server.username or argument != self.server.password:
            self.user = None
            self._send(b"-ERR [AUTH] Authentication failed.")
            return
        snapshot = self.server._snapshot()
        if snapshot is None:
            self._send(b"-ERR [IN-USE] Mailbox is locked by another session.")
            return
        self.messages = snapshot
        self._send(f"+OK Logged in, {len(snapshot)} messages.".encode())

    # -- TRANSACTION state --------------------------------------------------------------

    def _txn_capa(self, _argument: str) -> None:
        self._capa()

    def _txn_noop(self, _argument: str) -> None:
        self._send(b"+OK")

    def _txn_stat(self, _argument: str) -> None:
        live = self._live()
        self._send(f"+OK {len(live)} {sum(len(s.raw) for _, s in live)}".encode())

    def _txn_list(self, argument: str) -> None:
        self._listing(argument, lambda stored: str(len(stored.raw)))

    def _txn_uidl(self, argument: str) -> None:
        if self.faults.no_uidl:
            self._send(b"-ERR UIDL not supported")
            return
        self._listing(argument, lambda stored: stored.uid)

    def _txn_retr(self, argument: str) -> None:
        number = self._number(argument)
        if number is None:
            return
        raw = self._signed_in()[number - 1].raw
        body = stuffed(raw)
        self._send(f"+OK {len(raw)} octets".encode())
        if self.faults.drop_mid_retr == number:
            self.sock.sendall(body[: len(body) // 2])
            raise _HangUp
        if self.faults.stall_at == "RETR" and self.faults.stall_mid_retr:
            self.sock.sendall(body[: len(body) // 2])
            self._stall("RETR")
            self.sock.sendall(body[len(body) // 2 :])
        else:
            self.sock.sendall(body)
        self.retrieved.add(number)

    def _txn_dele(self, argument: str) -> None:
        number = self._number(argument)
        if number is not None:
            self.marked.add(number)
            self._send(f"+OK message {number} marked for deletion".encode())

    def _txn_rset(self, _argument: str) -> None:
        self.marked.clear()
        self._send(b"+OK")

    def _quit(self) -> None:
        if self.faults.drop_before_quit:
            raise _HangUp
        if self.messages is not None:
            # RFC 1939 §6: only now, in the UPDATE state, are marked messages removed.
            gone = self.marked | (self.retrieved if self.faults.gmail_quit else set())
            self.server._commit([self.messages[n - 1] for n in sorted(gone)])
            # Unlock before answering, so a client that connects again at once finds it free.
            self.server._release()
            self.messages = None
        self._send(b"+OK Bye")
        raise _HangUp  # the commit is done: closing now loses nothing

    # -- helpers -------------------------------------------------------------------------

    def _capa(self) -> None:
        if self.faults.no_capa:
            self._send(b"-ERR unknown command")
            return
        capabilities = ["TOP", "RESP-CODES", "AUTH-RESP-CODE", "IMPLEMENTATION FaultPOP3"]
        if not self.faults.no_uidl:
            capabilities.append("UIDL")
        if self.tls or not self.faults.advertise_stls:
            capabilities.append("USER")  # like Dovecot: no USER before TLS when TLS is offered
        if self.faults.advertise_stls and not self.tls:
            capabilities.append("STLS")
        self._send(b"+OK Capability list follows")
        self.sock.sendall(b"".join(c.encode() + CRLF for c in capabilities) + b"." + CRLF)

    def _signed_in(self) -> list[_Stored]:
        assert self.messages is not None, "only called in the TRANSACTION state"
        return self.messages

    def _live(self) -> list[tuple[int, _Stored]]:
        return [(n, s) for n, s in enumerate(self._signed_in(), 1) if n not in self.marked]

    def _number(self, argument: str) -> int | None:
        """A message number that exists and is not marked, or None after sending -ERR."""
        try:
            number = int(argument)
        except ValueError:
            self._send(b"-ERR invalid message number")
            return None
        if not 1 <= number <= len(self._signed_in()) or number in self.marked:
            self._send(b"-ERR no such message")
            return None
        return number

    def _listing(self, argument: str, render: Callable[[_Stored], str]) -> None:
        if argument:
            number = self._number(argument)
            if number is not None:
                self._send(f"+OK {number} {render(self._signed_in()[number - 1])}".encode())
            return
        lines = [f"{n} {render(stored)}" for n, stored in self._live()]
        self._send(b"+OK")
        self.sock.sendall(b"".join(line.encode() + CRLF for line in lines) + b"." + CRLF)

    def _stall(self, at: str) -> None:
        if self.faults.stall_at == at and self.faults.stall_seconds > 0:
            # Interruptible, so stopping the server does not wait for the stall to end.
            if self.server._stopping.wait(self.faults.stall_seconds):
                raise _HangUp

    def _start_tls(self) -> None:
        assert self.server.tls_context is not None
        self.sock = self.server.tls_context.wrap_socket(self.sock, server_side=True)
        self.reader = self.sock.makefile("rb")
        self.tls = True

    def _send(self, line: bytes) -> None:
        self.sock.sendall(line + CRLF)
