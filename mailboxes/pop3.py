"""A POP3 client for fetching a mailbox: one session = connect, secure, sign in, read, sign off.

Built on the standard library's ``poplib``, with what a mail hub needs on top:

- the host is checked and resolved once by ``mailboxes.hostcheck`` and the socket connects to
  that checked address (no second lookup, so no DNS rebinding), while TLS verifies the
  certificate against the host name;
- TLS is verified by default (system trust store plus ``settings.MAIL_CA_FILE``); STARTTLS
  (RFC 2595) never sends USER/PASS in the clear; plain text only with ``security="none"``;
- a timeout on connecting and on every read (``settings.POP3_TIMEOUT_SECONDS`` by default);
- every failure is a ``Pop3Error`` with a machine ``code`` and a plain ``user_message``
  (``mailboxes.pop3_errors``);
- deletions are explicit: DELE only marks (RFC 1939 §5), ``quit()`` commits them (RFC 1939 §6
  UPDATE state), and leaving the session any other way closes the socket without QUIT, so
  nothing marked is deleted and a provider such as Gmail does not count a RETR as taken.

Usage::

    with open_pop3_session(host=..., port=995, security="ssl", username=..., password=...) as s:
        uids = s.uidl()
        raw = s.retrieve(1)
        ...  # commit raw to the database
        s.delete(1)
        s.quit()  # only now are deletions applied; without it, nothing is deleted
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import poplib
import re
import socket
import ssl
import sys
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import ClassVar, cast

from django.conf import settings
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy, ngettext

from mailboxes.hostcheck import CheckedHost, DisallowedHost, check_mail_host, open_checked_socket
from mailboxes.mailserver import mail_tls_context, scrub_secret
from mailboxes.pop3_errors import (
    EOF,
    GREETING_REFUSED_MESSAGE,
    LINE_TOO_LONG,
    QUIT_FAILED_MESSAGE,
    AuthFailed,
    CertificateError,
    ConnectionLost,
    HostNotAllowed,
    HostNotFound,
    InvalidHost,
    LoginRefused,
    Pop3Error,
    ProtocolError,
    Refused,
    StlsNotOffered,
    TemporarilyUnavailable,
    Timeout,
    TlsError,
    Unreachable,
    as_text,
    error_for_host,
    error_for_reply,
    server_reply,
    translate_errors,
)

__all__ = [
    "AuthFailed",
    "CertificateError",
    "ConnectionLost",
    "ConnectionTestResult",
    "HostNotAllowed",
    "HostNotFound",
    "InvalidHost",
    "LoginRefused",
    "Pop3Error",
    "Pop3Security",
    "Pop3Session",
    "ProtocolError",
    "Refused",
    "StlsNotOffered",
    "TemporarilyUnavailable",
    "Timeout",
    "TlsError",
    "Unreachable",
    "open_pop3_session",
    "test_pop3_connection",
]

logger = logging.getLogger(__name__)


class Pop3Security(StrEnum):
    """How the connection is secured; the values are what the Mailbox model stores."""

    SSL = "ssl"  # implicit TLS from the first byte (RFC 8314), port 995
    STARTTLS = "starttls"  # plain connect, then STLS (RFC 2595), port 110
    NONE = "none"  # no encryption: only when an admin chose it explicitly


class _CheckedPOP3(poplib.POP3):
    """poplib.POP3 that connects to checked addresses and accepts long lines.

    poplib reads each line with ``readline(_MAXLINE + 1)`` where the module global ``_MAXLINE``
    is 2048 (RFC 1939's 512-octet limit is for commands and replies, not message content), so
    real mail with a long unwrapped HTML line fails with ``error_proto('line too long')``.
    ``_getline`` is overridden to use ``max_line_bytes`` instead, without touching the global.
    """

    max_line_bytes: ClassVar[int] = 1024 * 1024

    def __init__(
        self,
        checked: CheckedHost,
        port: int,
        *,
        timeout: float,
        implicit_tls: ssl.SSLContext | None,
    ) -> None:
        # poplib.POP3.__init__ would resolve the name again and leak the socket when the
        # greeting fails; set up the same attributes here and leave the greeting to the caller.
        self.host = checked.name  # used by poplib for TLS server_hostname
        self.port = port
        self._addresses = checked.addresses
        self._implicit_tls = implicit_tls
        self._tls_established = False
        self._debugging = 0
        self.sock = None  # type: ignore[assignment]
        self.file = None  # type: ignore[assignment]
        self.welcome = b""
        sys.audit("poplib.connect", self, self.host, port)
        self.sock = self._create_socket(timeout)
        self.file = self.sock.makefile("rb")

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = open_checked_socket(self._addresses, timeout=timeout)
        if self._implicit_tls is None:
            return sock
        try:
            return self._implicit_tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise

    def _getline(self) -> tuple[bytes, int]:
        line = self.file.readline(self.max_line_bytes + 1)
        if len(line) > self.max_line_bytes:
            raise poplib.error_proto(LINE_TOO_LONG)
        # A line without its LF means the stream ended mid-line: the reply is truncated
        # (poplib would chop the last byte off and carry on).
        if not line.endswith(b"\n"):
            raise poplib.error_proto(EOF)
        if line.endswith(b"\r\n"):
            return line[:-2], len(line)
        return line[:-1], len(line)

    # Typed doors to poplib's internals (typeshed leaves the underscored ones out); poplib's
    # public methods would do for most commands, but not for CAPA (see _ask_capabilities).
    def read_greeting(self) -> bytes:
        """Read the server's first line; error_proto if it is not +OK."""
        self.welcome = self._getresp()  # type: ignore[attr-defined]
        return self.welcome

    def short_command(self, line: str) -> bytes:
        """Send ``line``; return the +OK reply or raise error_proto(reply bytes)."""
        reply: bytes = self._shortcmd(line)  # type: ignore[attr-defined]
        return reply

    def long_command(self, line: str) -> list[bytes]:
        """Send ``line``; return the multi-line reply's lines, un-stuffed, without line ends."""
        _response, lines, _octets = self._longcmd(line)  # type: ignore[attr-defined]
        return list(lines)

    def long_command_bytes(self, line: str) -> bytes:
        """Send ``line``; return the multi-line reply as one bytes object, each line ending in CRLF.

        The octets of ``long_command``'s lines, each followed by CRLF (so a bare LF from a
        sloppy server becomes CRLF), un-stuffed (RFC 1939 §3), but read in blocks: poplib's
        loop costs a Python call per line, and a 2 MB attachment is 35,000 lines. The same
        checks as ``_getline``: a line over ``max_line_bytes`` is error_proto(LINE_TOO_LONG),
        a stream that ends before the terminating "." line is error_proto(EOF).
        """
        self._putcmd(line)  # type: ignore[attr-defined]
        self._getresp()  # type: ignore[attr-defined]  # error_proto(reply) unless +OK
        return _unstuffed_crlf(self._read_to_terminator())

    def _read_to_terminator(self) -> bytes:
        """Consume the reply's lines and its terminating "." line; return the lines.

        Only what is used is taken from the buffer (peek, then read), so whatever follows the
        terminator stays there for the next reply, as with line-by-line reading.
        """
        reader = cast(io.BufferedReader, self.file)  # socket.makefile("rb") is buffered
        limit = self.max_line_bytes
        body = bytearray()
        line_length = 0  # octets of the unfinished last line in ``body``
        while True:
            chunk = reader.peek(1)
            if not chunk:
                raise poplib.error_proto(EOF)
            # A terminator split across reads: look back 3 octets. The reply's first line
            # starts a line, as if after a LF.
            tail = (b"\n" + body[-3:])[-3:]
            found = _terminator_end(bytes(tail) + chunk)
            used = len(chunk) if found is None else found[0] - len(tail)
            part = chunk[:used]
            first_lf = part.find(b"\n")
            if first_lf == -1:
                line_length += used
            else:
                last_lf = part.rfind(b"\n")
                longest_inside = (
                    max(map(len, part[first_lf + 1 : last_lf].split(b"\n"))) + 1
                    if last_lf - first_lf > limit
                    else 0
                )
                if max(line_length + first_lf + 1, longest_inside) > limit:
                    raise poplib.error_proto(LINE_TOO_LONG)
                line_length = used - last_lf - 1
            if line_length > limit:
                raise poplib.error_proto(LINE_TOO_LONG)
            body += reader.read(used)
            if found is not None:
                del body[len(body) - found[1] :]
                return bytes(body)

    def start_tls(self, context: ssl.SSLContext) -> None:
        """Wrap the connected socket in TLS after the server said +OK to STLS (RFC 2595 §4)."""
        self.sock = context.wrap_socket(self.sock, server_hostname=self.host)
        # A fresh reader: anything the server sent in plain text after its +OK (a STARTTLS
        # response-injection attempt) stays in the old buffer and is never read as a reply.
        self.file = self.sock.makefile("rb")
        self._tls_established = True


@dataclass(frozen=True)
class ConnectionTestResult:
    """The outcome of the "Test connection" button."""

    ok: bool
    message: str
    message_count: int | None = None
    code: str | None = None


class Pop3Session:
    """A signed-in POP3 session (TRANSACTION state). Create with ``open_pop3_session``.

    As a context manager it always leaves with ``abort()`` unless ``quit()`` was called, so an
    exception or a forgotten quit never deletes anything. After a Pop3Error from any method
    other than ``uidl()`` returning None, the session should be abandoned (the context manager
    does it); the connection may be mid-reply.
    """

    def __init__(self, pop: _CheckedPOP3, *, password: str) -> None:
        self._pop: _CheckedPOP3 | None = pop
        self._password = password
        self._capabilities: dict[str, list[str]] = {}
        self.peer_certificate_sha256: str | None = None

    # -- context manager -------------------------------------------------------------------

    def __enter__(self) -> Pop3Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.abort()

    @property
    def closed(self) -> bool:
        """True once quit() or abort() has run."""
        return self._pop is None

    # -- reading ---------------------------------------------------------------------------

    def capabilities(self) -> dict[str, list[str]]:
        """The server's CAPA answer (RFC 2449) as name -> arguments; {} if it has no CAPA.

        With STARTTLS this is the answer given after the upgrade (RFC 2595 §4).
        """
        return {name: list(args) for name, args in self._capabilities.items()}

    def stat(self) -> tuple[int, int]:
        """STAT: (number of messages, total size in octets), deleted-marked ones excluded."""
        words = self._short("STAT").split()
        try:
            return int(words[1]), int(words[2])
        except (IndexError, ValueError):
            raise ProtocolError(self._scrub(b" ".join(words))) from None

    def uidl(self) -> dict[int, str] | None:
        """UIDL: message number -> unique id, or None when the server answers -ERR (no UIDL).

        UIDs are opaque strings; RFC 1939 limits them to 70 printable characters, but some
        servers send longer ones, which are kept whole.
        """
        try:
            lines = self._long("UIDL", errors_are_replies=True)
        except _ErrReply:
            return None
        result: dict[int, str] = {}
        for line in lines:
            try:
                number, uid = line.split(None, 1)
                result[int(number)] = uid.strip().decode("utf-8", "backslashreplace")
            except ValueError:
                raise ProtocolError(f"bad UIDL line {self._scrub(line)!r}") from None
        return result

    def sizes(self) -> dict[int, int]:
        """LIST: message number -> size in octets, as the server reports it."""
        result: dict[int, int] = {}
        for line in self._long("LIST"):
            try:
                number, size = line.split()[:2]
                result[int(number)] = int(size)
            except ValueError:
                raise ProtocolError(f"bad LIST line {self._scrub(line)!r}") from None
        return result

    def retrieve(self, number: int) -> bytes:
        """RETR: the message's bytes, lines ending in CRLF, RFC 1939 §3 dot-stuffing removed.

        Read in blocks, not line by line (``_CheckedPOP3.long_command_bytes``); a bare LF from a
        sloppy server becomes CRLF, as with poplib. Raises ConnectionLost when the connection ends
        before the terminating "." (a truncated message is never returned), Timeout when the
        server stalls for longer than the timeout between two reads.
        """
        return self._long_bytes(f"RETR {_message_number(number)}")

    def top(self, number: int, lines: int = 0) -> bytes:
        """TOP (RFC 1939 §7, optional): the message's header and its first ``lines`` body lines.

        Used to read headers (Date, Subject) without downloading a message."""
        if lines < 0:
            raise ValueError("TOP needs a line count of 0 or more")
        return self._long_bytes(f"TOP {_message_number(number)} {int(lines)}")

    # -- changing --------------------------------------------------------------------------

    def delete(self, number: int) -> None:
        """DELE: mark a message for deletion. RFC 1939 §6: it is removed only at quit()."""
        self._short(f"DELE {_message_number(number)}")

    def reset(self) -> None:
        """RSET: unmark every message marked for deletion in this session."""
        self._short("RSET")

    def quit(self) -> None:
        """QUIT: enter the UPDATE state (RFC 1939 §6), applying deletions, and close.

        Call only once every message retrieved in the session is committed (some providers
        treat every retrieved message as taken at QUIT). Raises ProtocolError when the server
        answers -ERR (some deletions may not have happened), ConnectionLost or Timeout when no
        answer came (deletions may or may not have happened). The socket is closed either way.
        """
        try:
            self._short("QUIT", message=QUIT_FAILED_MESSAGE)
        finally:
            self.abort()

    def abort(self) -> None:
        """Close the connection WITHOUT QUIT: the server stays out of the UPDATE state, so
        nothing marked with DELE is deleted (RFC 1939 §6). Safe to call more than once."""
        pop, self._pop = self._pop, None
        if pop is not None:
            with contextlib.suppress(OSError):
                pop.close()

    # -- internals -------------------------------------------------------------------------

    def _open(self) -> _CheckedPOP3:
        if self._pop is None:
            raise RuntimeError("The POP3 session is closed.")
        return self._pop

    def _scrub(self, text: bytes | str) -> str:
        """``text`` as str with the password blanked, for ``detail`` and logs."""
        return scrub_secret(text, self._password)

    def _short(
        self,
        command: str,
        *,
        during_login: bool = False,
        message: Promise | str | None = None,
    ) -> bytes:
        """Send a one-line command and return its +OK reply, raising the right Pop3Error."""
        pop = self._open()
        with translate_errors(self._scrub):
            try:
                return pop.short_command(command)
            except poplib.error_proto as exc:
                reply = server_reply(exc)
                if reply is None:
                    raise
                error = error_for_reply(reply, self._scrub(reply), during_login=during_login)
                if message is not None and type(error) is ProtocolError:
                    error = ProtocolError(error.detail, message=message)
                raise error from None

    def _long(self, command: str, *, errors_are_replies: bool = False) -> list[bytes]:
        """Send a multi-line command and return its lines (un-stuffed, without line ends)."""
        pop = self._open()
        with translate_errors(self._scrub):
            try:
                lines = pop.long_command(command)
            except poplib.error_proto as exc:
                reply = server_reply(exc)
                if reply is None:
                    raise
                if errors_are_replies:
                    raise _ErrReply(reply) from None
                raise error_for_reply(reply, self._scrub(reply), during_login=False) from None
        return lines

    def _long_bytes(self, command: str) -> bytes:
        """Send a multi-line command; return its reply as bytes (un-stuffed, CRLF line ends)."""
        pop = self._open()
        with translate_errors(self._scrub):
            try:
                return pop.long_command_bytes(command)
            except poplib.error_proto as exc:
                reply = server_reply(exc)
                if reply is None:
                    raise
                raise error_for_reply(reply, self._scrub(reply), during_login=False) from None

    def _start(
        self,
        *,
        security: Pop3Security,
        tls_context: ssl.SSLContext | None,
        username: str,
        password: str,
    ) -> None:
        """Greeting, TLS (for STARTTLS), CAPA and USER/PASS: AUTHORIZATION -> TRANSACTION."""
        pop = self._open()
        with translate_errors(self._scrub):
            try:
                pop.read_greeting()
            except poplib.error_proto as exc:
                reply = server_reply(exc)
                if reply is None:
                    raise
                error = error_for_reply(reply, self._scrub(reply), during_login=False)
                if type(error) is ProtocolError:
                    error = ProtocolError(error.detail, message=GREETING_REFUSED_MESSAGE)
                raise error from None
        self._capabilities = self._ask_capabilities()
        if security is Pop3Security.STARTTLS:
            assert tls_context is not None
            # RFC 2595 §4: STLS only when CAPA lists it; never fall back to USER/PASS in clear.
            if "STLS" not in self._capabilities:
                raise StlsNotOffered("STLS not in CAPA")
            try:
                self._short("STLS")
            except ProtocolError as exc:  # -ERR to STLS: refused after all
                raise StlsNotOffered(exc.detail) from None
            with translate_errors(self._scrub, handshake=True):
                pop.start_tls(tls_context)
            # RFC 2595 §4: discard capabilities learnt before TLS and ask again.
            self._capabilities = self._ask_capabilities()
        if isinstance(pop.sock, ssl.SSLSocket):
            der = pop.sock.getpeercert(binary_form=True)
            self.peer_certificate_sha256 = hashlib.sha256(der).hexdigest() if der else None
        self._short(f"USER {username}", during_login=True)
        self._short(f"PASS {password}", during_login=True)

    def _ask_capabilities(self) -> dict[str, list[str]]:
        # Not poplib's capa(): it reports a dropped connection as "CAPA not supported".
        try:
            lines = self._long("CAPA", errors_are_replies=True)
        except _ErrReply:
            return {}  # RFC 2449 §5: a server without CAPA answers -ERR
        capabilities: dict[str, list[str]] = {}
        for line in lines:
            words = line.decode("ascii", "replace").split()
            if words:
                capabilities[words[0].upper()] = words[1:]
        return capabilities


def open_pop3_session(
    *,
    host: str,
    port: int,
    security: Pop3Security | str,
    username: str,
    password: str,
    accept_self_signed: bool = False,
    timeout: float | None = None,
) -> Pop3Session:
    """Connect, secure and sign in; return a session in the TRANSACTION state.

    ``security``: "ssl" (implicit TLS), "starttls" (STLS, RFC 2595) or "none".
    ``accept_self_signed``: for "ssl" and "starttls", accept ANY certificate the server shows
    (self-signed, expired, unknown issuer, other host name) - the connection is still
    encrypted against eavesdropping, but not authenticated against an active attacker. An
    admin ticks it per mailbox for an internal server; ``peer_certificate_sha256`` on the
    session lets a caller pin the certificate it saw. The host name is deliberately not
    checked in this mode: anyone able to intercept can mint a self-signed certificate with the
    right name, so the check would add no security while breaking internal servers whose
    self-signed certificate names "localhost".
    ``timeout``: seconds for connecting and for every read; None means the
    ``POP3_TIMEOUT_SECONDS`` setting.

    Raises a Pop3Error subclass on any failure, having closed the connection.
    """
    security = Pop3Security(security)
    timeout = float(settings.POP3_TIMEOUT_SECONDS if timeout is None else timeout)
    if any(char in value for value in (username, password) for char in "\r\n\0"):
        # A line break would end the command early and let the rest be read as a command.
        raise AuthFailed(
            "credential contains CR, LF or NUL",
            message=gettext_lazy(
                "The user name or password contains a line break, which POP3 cannot send."
            ),
        )
    try:
        checked = check_mail_host(host, port)
    except (DisallowedHost, ValueError, socket.gaierror) as exc:
        raise error_for_host(host, exc) from None
    tls_context = None if security is Pop3Security.NONE else mail_tls_context(accept_self_signed)
    implicit = tls_context if security is Pop3Security.SSL else None
    with translate_errors(as_text, handshake=True):
        pop = _CheckedPOP3(checked, port, timeout=timeout, implicit_tls=implicit)
    session = Pop3Session(pop, password=password)
    try:
        session._start(
            security=security, tls_context=tls_context, username=username, password=password
        )
    except BaseException:
        session.abort()
        raise
    return session


def test_pop3_connection(
    *,
    host: str,
    port: int,
    security: Pop3Security | str,
    username: str,
    password: str,
    accept_self_signed: bool = False,
    timeout: float | None = None,
) -> ConnectionTestResult:
    """Sign in for real, count the messages with STAT, and QUIT without touching any.

    Never raises a Pop3Error: a failure comes back as ``ok=False`` with the plain message and
    the code, and is logged with the (password-free) detail for the operator.
    """
    try:
        with open_pop3_session(
            host=host,
            port=port,
            security=security,
            username=username,
            password=password,
            accept_self_signed=accept_self_signed,
            timeout=timeout,
        ) as session:
            count, _size = session.stat()
            session.quit()
    except Pop3Error as exc:
        logger.info("POP3 connection test to %s:%s failed: %s", host, port, exc)
        return ConnectionTestResult(ok=False, message=str(exc.user_message), code=exc.code)
    message = ngettext(
        "Connected and signed in. %(count)d message is waiting on the server.",
        "Connected and signed in. %(count)d messages are waiting on the server.",
        count,
    ) % {"count": count}
    return ConnectionTestResult(ok=True, message=message, message_count=count)


# pytest would otherwise collect this imported function as a test in any test module.
test_pop3_connection.__test__ = False  # type: ignore[attr-defined]


class _ErrReply(Exception):
    """Internal: the server answered -ERR to a command where that is a normal answer."""

    def __init__(self, reply: bytes) -> None:
        super().__init__(reply)
        self.reply = reply


def _terminator_end(window: bytes) -> tuple[int, int] | None:
    """Where the first terminating line ("." alone, after a LF) in ``window`` ends, and its
    length without that LF; None if there is none, or it may be cut off at the end."""
    start = window.find(b"\n.")
    while start != -1:
        after = window[start + 2 : start + 4]
        if after[:1] == b"\n":
            return start + 3, 2
        if after == b"\r\n":
            return start + 4, 3
        start = window.find(b"\n.", start + 1)
    return None


_BARE_LF = re.compile(rb"(?<!\r)\n")


def _unstuffed_crlf(lines: bytes) -> bytes:
    """Lines as read (each ending in LF) -> dot-stuffing undone (RFC 1939 §3), CRLF line ends.

    What poplib does line by line: a line starting ".." loses its first ".", and a line
    ending in a bare LF gets CRLF."""
    if lines.startswith(b".."):
        lines = lines[1:]
    if b"\n.." in lines:
        lines = lines.replace(b"\n..", b"\n.")
    if lines.count(b"\n") != lines.count(b"\r\n"):
        lines = _BARE_LF.sub(b"\r\n", lines)
    return lines


def _message_number(number: int) -> int:
    # A str here could smuggle a second command; RFC 1939 message numbers start at 1.
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise ValueError(f"POP3 message numbers are whole numbers from 1, not {number!r}.")
    return number
