"""A POP3 client for fetching a mailbox: one session = connect, secure, sign in, read, sign off.

Built on the standard library's ``poplib``, with what a mail hub needs on top:

- the host is checked and resolved once by ``mailboxes.hostcheck`` and the socket connects to
  that checked address (no second lookup, so no DNS rebinding), while TLS verifies the
  certificate against the host name;
- TLS is verified by default (system trust store plus ``settings.MAIL_CA_FILE``); STARTTLS
  (RFC 2595) never sends USER/PASS in the clear; plain text only with ``security="none"``;
- the octets on the socket (checked addresses, line limits, block reads, dot-stuffing) are
  ``mailboxes.pop3_wire``'s;
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
import logging
import poplib
import socket
import ssl
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType

from django.conf import settings
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy, ngettext

from mailboxes.hostcheck import DisallowedHost, check_mail_host
from mailboxes.mailserver import mail_tls_context, scrub_secret
from mailboxes.pop3_errors import (
    GREETING_REFUSED_MESSAGE,
    QUIT_FAILED_MESSAGE,
    AuthFailed,
    CertificateError,
    ConnectionLost,
    HostNotAllowed,
    HostNotFound,
    InvalidHost,
    LoginRefused,
    MessageRefused,
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
from mailboxes.pop3_wire import CheckedPOP3

__all__ = [
    "AuthFailed",
    "CertificateError",
    "ConnectionLost",
    "ConnectionTestResult",
    "HostNotAllowed",
    "HostNotFound",
    "InvalidHost",
    "LoginRefused",
    "MessageRefused",
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

    def __init__(self, pop: CheckedPOP3, *, password: str) -> None:
        self._pop: CheckedPOP3 | None = pop
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

        Read in blocks, not line by line (``CheckedPOP3.long_command_bytes``); a bare LF from a
        sloppy server becomes CRLF, as with poplib. Raises ConnectionLost when the connection ends
        before the terminating "." (a truncated message is never returned), Timeout when the
        server stalls for longer than the timeout between two reads, MessageRefused when the
        server answers -ERR (the session can go on with other messages).
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

    def _open(self) -> CheckedPOP3:
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
        """Send a multi-line command; return its reply as bytes (un-stuffed, CRLF line ends).

        A plain -ERR (no RFC 2449 response code that makes it about the server or the account)
        is MessageRefused: the session is still usable."""
        pop = self._open()
        with translate_errors(self._scrub):
            try:
                return pop.long_command_bytes(command)
            except poplib.error_proto as exc:
                reply = server_reply(exc)
                if reply is None:
                    raise
                error = error_for_reply(reply, self._scrub(reply), during_login=False)
                # poplib raises any first line not starting with "+" as the reply; only a real
                # -ERR line is known to leave the stream in step.
                if type(error) is ProtocolError and reply[:4].upper() == b"-ERR":
                    error = MessageRefused(error.detail, message=error.user_message)
                raise error from None

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
        pop = CheckedPOP3(checked, port, timeout=timeout, implicit_tls=implicit)
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


def _message_number(number: int) -> int:
    # A str here could smuggle a second command; RFC 1939 message numbers start at 1.
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise ValueError(f"POP3 message numbers are whole numbers from 1, not {number!r}.")
    return number
