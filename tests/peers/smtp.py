"""An SMTP submission server for tests: aiosmtpd in a thread, on a free loopback port.

Usage::

    with SmtpServer(tmp_path, username="sender@example.com", password="pw") as server:
        with smtplib.SMTP(server.host, server.port) as client:
            client.starttls(context=ssl.create_default_context(cafile=server.ca_file))
            client.login("sender@example.com", "pw")
            client.sendmail("sender@example.com", ["to@example.com"], raw_bytes)
        assert server.messages[0].raw == raw_bytes   # with CRLF line ends, as sent

Security modes (``security=``):

=============  =======================================================================
``starttls``   plain connection, STARTTLS offered (``require_starttls=True`` refuses
               everything but EHLO/NOOP/QUIT before it, 530)
``implicit``   TLS from the first byte (SMTPS, "port 465 style")
``plain``      no TLS at all
=============  =======================================================================

Authentication (AUTH PLAIN and LOGIN) is offered when ``username`` is given; it is refused
with 538 before TLS unless ``allow_auth_without_tls=True``; a wrong login or password gets
``535 5.7.8``. With a username, MAIL FROM without AUTH gets ``530 5.7.0`` unless
``require_auth=False``. Recipients in ``refused_recipients`` (a mutable set, compared without
case) get ``550 5.1.1`` at RCPT TO; the others are accepted.

The raw bytes recorded are the DATA as received, after dot-unstuffing and without the final
``.`` line, line ends untouched. SMTP lines end in CRLF: smtplib converts bare LFs only in a
``str`` message, so a sender that passes ``bytes`` must produce CRLF itself (a bare LF is
not a line end, and a ``.`` after one is not unstuffed).
"""

from __future__ import annotations

import errno
import logging
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.peers.certs import CertKind, write_tls_files
from tests.peers.ports import free_ports


class _WithoutLoginDataDeprecation(logging.Filter):
    """aiosmtpd 1.4 logs a deprecation warning of its own at every successful AUTH."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_WithoutLoginDataDeprecation())

SmtpSecurity = Literal["starttls", "implicit", "plain"]
SMTP_SECURITIES: tuple[SmtpSecurity, ...] = ("starttls", "implicit", "plain")


@dataclass(frozen=True)
class ReceivedMessage:
    """One message the server accepted (answered 250 to its DATA)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    # The login that authenticated the session, or None if it did not authenticate.
    authenticated_as: str | None
    # Whether the session was encrypted (STARTTLS done, or implicit TLS).
    over_tls: bool


@dataclass(frozen=True)
class AuthAttempt:
    """One AUTH command with a login and password, successful or not."""

    login: str
    mechanism: str
    success: bool
    over_tls: bool


class SmtpServer:
    """A recording SMTP server on ``127.0.0.1:<port>``; see the module docstring.

    Contract: ``start()`` returns once the port accepts connections; ``stop()`` (also
    ``__exit__``) closes it. ``messages`` and ``auth_attempts`` grow as clients talk, from the
    server's thread; a message is recorded before its 250 is sent, so it is there when
    ``smtplib.sendmail`` returns.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        tmp_path: Path,
        *,
        security: SmtpSecurity = "starttls",
        cert: CertKind = "valid",
        username: str | None = None,
        password: str | None = None,
        require_auth: bool | None = None,
        allow_auth_without_tls: bool = False,
        require_starttls: bool = False,
        refused_recipients: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        if security not in SMTP_SECURITIES:
            raise ValueError(f"unknown security {security!r}; expected one of {SMTP_SECURITIES}")
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        if require_starttls and security != "starttls":
            raise ValueError("require_starttls needs security='starttls'")
        self.security: SmtpSecurity = security
        self.cert: CertKind = cert
        self.username = username
        self.password = password
        self.require_auth = username is not None if require_auth is None else require_auth
        self.allow_auth_without_tls = allow_auth_without_tls
        self.require_starttls = require_starttls
        self.refused_recipients: set[str] = {address.lower() for address in refused_recipients}
        self.messages: list[ReceivedMessage] = []
        self.auth_attempts: list[AuthAttempt] = []
        self._tls_files = write_tls_files(_unique_folder(tmp_path, "smtp-tls"), cert)
        self.ca_file: Path = self._tls_files.ca_file
        self.port = 0
        self._controller: Controller | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> SmtpServer:
        """Listen on a free port; return ``self``."""
        if self._controller is not None:
            raise RuntimeError("this SmtpServer is already running")
        for _attempt in range(3):
            (self.port,) = free_ports(self.host, 1)
            controller = self._make_controller()
            try:
                controller.start()
            except OSError as error:
                # Another process took the port between free_ports() and the bind.
                if error.errno == errno.EADDRINUSE:
                    continue
                raise
            self._controller = controller
            return self
        raise RuntimeError("could not find a free port for the SMTP server")

    def stop(self) -> None:
        """Close the port and end the server thread; safe to call twice."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> SmtpServer:
        if self._controller is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def wait_for_messages(self, count: int, *, timeout: float = 10.0) -> list[ReceivedMessage]:
        """Wait until at least ``count`` messages arrived (for senders in other threads or
        processes); return them all, or raise ``TimeoutError``."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.messages)} of {count} messages after {timeout} s")
            time.sleep(0.01)
        return list(self.messages)

    # -- internals -------------------------------------------------------------------------

    def _make_controller(self) -> Controller:
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_context.load_cert_chain(self._tls_files.cert_file, self._tls_files.key_file)
        implicit = self.security == "implicit"
        return Controller(
            _RecordingHandler(self),
            hostname=self.host,
            port=self.port,
            ssl_context=server_context if implicit else None,
            # Without it aiosmtpd calls socket.getfqdn(), a DNS lookup that can stall.
            server_hostname="localhost",
            ready_timeout=10.0,
            # The keyword arguments below go to aiosmtpd.smtp.SMTP.
            tls_context=server_context if self.security == "starttls" else None,
            require_starttls=self.require_starttls,
            # aiosmtpd knows of TLS only through STARTTLS, so with implicit TLS it would refuse
            # AUTH as "not encrypted": every implicit-TLS connection is encrypted, so lift it.
            auth_require_tls=not (self.allow_auth_without_tls or implicit),
            # Enforced in handle_MAIL instead, the same way in every mode (aiosmtpd's own check
            # warns when TLS is not required for AUTH).
            auth_required=False,
            authenticator=self._authenticate if self.username is not None else None,
            enable_SMTPUTF8=True,
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        """aiosmtpd's authenticator hook: accept only the configured login and password."""
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = data.login.decode("utf-8", errors="replace")
        password = data.password.decode("utf-8", errors="replace")
        success = login == self.username and password == self.password
        self.auth_attempts.append(
            AuthAttempt(
                login=login, mechanism=mechanism, success=success, over_tls=_over_tls(self, session)
            )
        )
        # handled=False: aiosmtpd answers 235 on success and 535 5.7.8 on failure.
        return AuthResult(success=success, handled=False, auth_data=login if success else None)


class _RecordingHandler:
    """aiosmtpd handler hooks: enforce AUTH, refuse listed recipients, record messages."""

    def __init__(self, owner: SmtpServer) -> None:
        self._owner = owner

    async def handle_MAIL(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self._owner.require_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.lower() in self._owner.refused_recipients:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content or b""
        self._owner.messages.append(
            ReceivedMessage(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                raw=raw,
                authenticated_as=session.auth_data if session.authenticated else None,
                over_tls=_over_tls(self._owner, session),
            )
        )
        return "250 2.0.0 Message accepted for delivery"


def _over_tls(owner: SmtpServer, session: Session) -> bool:
    # session.ssl is set by STARTTLS only; implicit TLS wraps the transport before aiosmtpd.
    return owner.security == "implicit" or session.ssl is not None


_folder_lock = threading.Lock()


def _unique_folder(parent: Path, prefix: str) -> Path:
    """A new folder ``parent/prefix-N``, so several servers can share one ``tmp_path``."""
    with _folder_lock:
        for number in range(1000):
            folder = parent / f"{prefix}-{number}"
            try:
                folder.mkdir(parents=True)
            except FileExistsError:
                continue
            return folder
    raise RuntimeError(f"too many {prefix} folders in {parent}")
