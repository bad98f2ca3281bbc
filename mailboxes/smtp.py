"""An SMTP client for sending: one session = connect, secure, sign in, send, sign off.

Built on the standard library's ``smtplib``, with what a mail hub needs on top (the same
contract as the POP3 client, ``mailboxes.pop3``):

- the host is checked and resolved once by ``mailboxes.hostcheck`` and the socket connects to
  that checked address (no second lookup, so no DNS rebinding), while TLS verifies the
  certificate against the host name;
- TLS is verified by default (system trust store plus ``settings.MAIL_CA_FILE``; a mailbox's
  ``accept_self_signed`` relaxes it as for POP3); STARTTLS (RFC 3207) never sends the
  password in the clear; plain text only with ``security="none"``;
- a timeout on connecting and on every read (``settings.SMTP_TIMEOUT_SECONDS``);
- every failure is an ``SmtpError`` with a machine ``code`` and a plain ``user_message``
  (``mailboxes.smtp_errors``); the password never appears in one, nor in a log line.

Usage::

    account = SmtpAccount.of(mailbox)
    receipt = send_raw_message(account=account, sender=..., recipients=[...], raw=raw_bytes)
    receipt.refused  # {address: (code, reply)} for recipients the server turned down
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import smtplib
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any, Protocol

from django.conf import settings
from django.utils.translation import gettext

from mailboxes.hostcheck import CheckedHost, DisallowedHost, check_mail_host, open_checked_socket
from mailboxes.mailserver import mail_tls_context, scrub_secret
from mailboxes.pop3 import ConnectionTestResult
from mailboxes.smtp_errors import (
    CREDENTIAL_CHARACTERS_MESSAGE,
    AuthFailed,
    AuthNotOffered,
    CertificateError,
    ConnectionLost,
    EncryptionRequired,
    HostNotAllowed,
    HostNotFound,
    InvalidHost,
    MessageRefused,
    ProtocolError,
    RecipientRefused,
    Refused,
    SenderRefused,
    SmtpError,
    StartTlsNotOffered,
    TemporaryFailure,
    Timeout,
    TlsError,
    Unreachable,
    as_text,
    error_for_host,
    translate_errors,
)

__all__ = [
    "AuthFailed",
    "AuthNotOffered",
    "CertificateError",
    "ConnectionLost",
    "EncryptionRequired",
    "HostNotAllowed",
    "HostNotFound",
    "InvalidHost",
    "MessageRefused",
    "ProtocolError",
    "RecipientRefused",
    "Refused",
    "SenderRefused",
    "SendReceipt",
    "SmtpAccount",
    "SmtpError",
    "SmtpSecurity",
    "SmtpSession",
    "StartTlsNotOffered",
    "TemporaryFailure",
    "Timeout",
    "TlsError",
    "Unreachable",
    "open_smtp_session",
    "send_raw_message",
    "test_smtp_connection",
]

logger = logging.getLogger(__name__)

# The AUTH mechanisms smtplib can do with a password (smtplib.SMTP.login's own list).
_PASSWORD_MECHANISMS = frozenset({"CRAM-MD5", "PLAIN", "LOGIN"})
# What an envelope address may look like by the time it reaches the wire: compose normalises
# every address, so anything else here is a bug, and a CR/LF would inject an SMTP command.
_ENVELOPE_ADDRESS = re.compile(r"[!#$%&'*+/=?^_`{|}~.A-Za-z0-9-]+@[A-Za-z0-9.-]+")


class SmtpSecurity(StrEnum):
    """How the connection is secured; the values are what the models store."""

    SSL = "ssl"  # implicit TLS from the first byte (RFC 8314), port 465
    STARTTLS = "starttls"  # plain connect, then STARTTLS (RFC 3207), port 587
    NONE = "none"  # no encryption: only when an admin chose it explicitly


class HasSmtpSettings(Protocol):
    """A Mailbox or a SystemSender: anything with outgoing-server settings and credentials."""

    smtp_host: str
    smtp_port: int
    smtp_security: str
    accept_self_signed: bool

    def smtp_credentials(self) -> tuple[str, str]: ...


@dataclass(frozen=True)
class SmtpAccount:
    """Where and how to send. ``password`` is left out of repr so it never reaches a log."""

    host: str
    port: int
    security: str
    username: str
    password: str = field(repr=False)
    accept_self_signed: bool = False

    @classmethod
    def of(cls, source: HasSmtpSettings) -> SmtpAccount:
        """The account of a Mailbox or SystemSender (decrypts the stored password)."""
        username, password = source.smtp_credentials()
        return cls(
            host=source.smtp_host,
            port=source.smtp_port,
            security=source.smtp_security,
            username=username,
            password=password,
            accept_self_signed=source.accept_self_signed,
        )


@dataclass(frozen=True)
class SendReceipt:
    """What the server said to a message it accepted: ``refused`` lists recipients it did not
    take (each with its reply code and text); empty when every recipient was accepted."""

    refused: dict[str, tuple[int, str]]


class _CheckedSMTP(smtplib.SMTP):
    """smtplib.SMTP that connects to checked addresses, optionally with implicit TLS.

    One class for both modes (instead of SMTP and SMTP_SSL) so that the socket always comes
    from ``open_checked_socket``; TLS, implicit or by STARTTLS, verifies against ``_host``,
    which smtplib uses as ``server_hostname``.
    """

    def __init__(
        self,
        checked: CheckedHost,
        port: int,
        *,
        timeout: float,
        implicit_tls: ssl.SSLContext | None,
    ) -> None:
        self._addresses = checked.addresses
        self._implicit_tls = implicit_tls
        # A local_hostname is passed so that smtplib does not call socket.getfqdn(), a DNS
        # lookup that can stall; the real EHLO name is set once the socket exists.
        super().__init__(local_hostname="localhost", timeout=timeout)
        self._host = checked.name
        try:
            code, reply = self.connect(checked.name, port)
            if code != 220:
                raise smtplib.SMTPConnectError(code, reply)
            assert self.sock is not None  # connect() set it or raised
            self.local_hostname = _address_literal(self.sock.getsockname())
        except BaseException:
            self.close()
            raise

    def _get_socket(self, host: str, port: int, timeout: float | None) -> socket.socket:
        sock = open_checked_socket(self._addresses, timeout=timeout)
        if self._implicit_tls is None:
            return sock
        try:
            return self._implicit_tls.wrap_socket(sock, server_hostname=self._host)
        except BaseException:
            sock.close()
            raise


def _address_literal(sockname: tuple[Any, ...]) -> str:
    """RFC 5321 §4.1.3 address literal of our end of the connection, for EHLO.

    RFC 5321 §4.1.4 asks for our FQDN or, failing that, an address literal; a worker in a
    container has no meaningful FQDN, and mail clients (Thunderbird) send the literal too.
    """
    address = ipaddress.ip_address(str(sockname[0]).split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return f"[{address.ipv4_mapped}]"
        return f"[IPv6:{address}]"
    return f"[{address}]"


class SmtpSession:
    """A connected (and, with a user name, signed-in) SMTP session. Create with
    ``open_smtp_session``; as a context manager it closes the connection on the way out."""

    def __init__(self, client: _CheckedSMTP, *, password: str) -> None:
        self._client: _CheckedSMTP | None = client
        self._password = password

    def __enter__(self) -> SmtpSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.abort()

    def send(self, *, sender: str, recipients: Sequence[str], raw: bytes) -> SendReceipt:
        """MAIL FROM, RCPT TO each recipient, DATA ``raw`` (CRLF line ends, as stored).

        Returns the receipt when the server accepted the message for at least one recipient;
        raises RecipientRefused when it refused them all, SenderRefused, MessageRefused,
        TemporaryFailure or another SmtpError otherwise.
        """
        for address in (sender, *recipients):
            if not _ENVELOPE_ADDRESS.fullmatch(address):
                raise ValueError(f"not a normalised envelope address: {address!r}")
        if not recipients:
            raise ValueError("a message needs at least one recipient")
        client = self._open()
        with translate_errors(self._scrub):
            refused = client.sendmail(sender, list(recipients), raw)
        return SendReceipt(
            refused={
                address: (code, self._scrub(reply)) for address, (code, reply) in refused.items()
            }
        )

    def quit(self) -> None:
        """QUIT and close. A failure here does not undo an accepted message, so it is only
        logged (RFC 5321 §4.1.1.10: the server has taken responsibility at DATA's 250)."""
        client = self._open()
        try:
            client.quit()
        except (smtplib.SMTPException, OSError) as exc:
            logger.info("SMTP QUIT failed (ignored): %s", self._scrub(str(exc)))
        finally:
            self.abort()

    def abort(self) -> None:
        """Close the connection without QUIT. Safe to call more than once."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(OSError):
                client.close()

    def _open(self) -> _CheckedSMTP:
        if self._client is None:
            raise RuntimeError("The SMTP session is closed.")
        return self._client

    def _scrub(self, text: bytes | str) -> str:
        """``text`` as str with the password blanked, for ``detail`` and logs."""
        return scrub_secret(text, self._password)

    def _start(
        self,
        *,
        security: SmtpSecurity,
        tls_context: ssl.SSLContext | None,
        username: str,
        password: str,
    ) -> None:
        """EHLO, STARTTLS (when chosen), EHLO again, AUTH (when a user name is set)."""
        client = self._open()
        with translate_errors(self._scrub):
            client.ehlo_or_helo_if_needed()
        if security is SmtpSecurity.STARTTLS:
            assert tls_context is not None
            # RFC 3207 §4: only when EHLO lists STARTTLS; never fall back to AUTH in clear.
            if not client.has_extn("starttls"):
                raise StartTlsNotOffered("STARTTLS not in EHLO")
            with translate_errors(self._scrub, handshake=True):
                # smtplib drops its read buffer here, so anything the server sent in plain
                # text after its 220 (a response-injection attempt) is never read as a reply.
                client.starttls(context=tls_context)
            with translate_errors(self._scrub):
                # RFC 3207 §4.2: forget what was learnt before TLS and ask again.
                client.ehlo()
        if not username:
            return
        if not client.has_extn("auth"):
            raise AuthNotOffered("AUTH not in EHLO")
        offered = set(client.esmtp_features.get("auth", "").upper().split())
        if not offered & _PASSWORD_MECHANISMS:
            raise AuthNotOffered(
                f"AUTH offers only {sorted(offered)}",
                message=gettext(
                    "The outgoing mail server offers only sign-in methods RecruitMail cannot "
                    "use (for example OAuth)."
                ),
            )
        with translate_errors(self._scrub):
            try:
                client.login(username, password)
            except UnicodeEncodeError:
                # smtplib encodes AUTH responses as ASCII before base64.
                raise AuthFailed(
                    "non-ASCII credential", message=CREDENTIAL_CHARACTERS_MESSAGE
                ) from None


def open_smtp_session(account: SmtpAccount, *, timeout: float | None = None) -> SmtpSession:
    """Connect, secure and sign in to ``account``'s server; return the session.

    ``accept_self_signed`` accepts any certificate (see ``mailboxes.pop3.open_pop3_session``
    for why the host name is then not checked either). ``timeout``: seconds for connecting and
    for every read; None means ``settings.SMTP_TIMEOUT_SECONDS``.
    Raises an SmtpError subclass on any failure, having closed the connection.
    """
    security = SmtpSecurity(account.security)
    timeout = float(settings.SMTP_TIMEOUT_SECONDS if timeout is None else timeout)
    if "\0" in account.username or "\0" in account.password:
        # AUTH PLAIN separates its fields with NUL: one inside would shift them.
        raise AuthFailed("credential contains NUL", message=CREDENTIAL_CHARACTERS_MESSAGE)
    try:
        checked = check_mail_host(account.host, account.port)
    except (DisallowedHost, ValueError, socket.gaierror) as exc:
        raise error_for_host(account.host, exc) from None
    tls_context = (
        None if security is SmtpSecurity.NONE else mail_tls_context(account.accept_self_signed)
    )
    implicit = tls_context if security is SmtpSecurity.SSL else None
    with translate_errors(as_text, handshake=True):
        client = _CheckedSMTP(checked, account.port, timeout=timeout, implicit_tls=implicit)
    session = SmtpSession(client, password=account.password)
    try:
        session._start(
            security=security,
            tls_context=tls_context,
            username=account.username,
            password=account.password,
        )
    except BaseException:
        session.abort()
        raise
    return session


def send_raw_message(
    *,
    account: SmtpAccount,
    sender: str,
    recipients: Sequence[str],
    raw: bytes,
    timeout: float | None = None,
) -> SendReceipt:
    """Send ``raw`` in one session and sign off. Raises SmtpError when nothing was sent."""
    with open_smtp_session(account, timeout=timeout) as session:
        receipt = session.send(sender=sender, recipients=recipients, raw=raw)
        session.quit()
    return receipt


def test_smtp_connection(
    source: HasSmtpSettings | SmtpAccount, *, timeout: float | None = None
) -> ConnectionTestResult:
    """EHLO, STARTTLS, AUTH and QUIT against the outgoing server: no mail is sent.

    ``source`` is a Mailbox or SystemSender (saved or not) or an SmtpAccount. Never raises an
    SmtpError: a failure comes back as ``ok=False`` with the plain message and the code, and
    is logged with the (password-free) detail for the operator.
    """
    account = source if isinstance(source, SmtpAccount) else SmtpAccount.of(source)
    try:
        with open_smtp_session(account, timeout=timeout) as session:
            session.quit()
    except SmtpError as exc:
        logger.info("SMTP connection test to %s:%s failed: %s", account.host, account.port, exc)
        return ConnectionTestResult(ok=False, message=str(exc.user_message), code=exc.code)
    if account.username:
        message = gettext("Connected and signed in to the outgoing mail server.")
    else:
        message = gettext("Connected to the outgoing mail server (no sign-in is set up).")
    return ConnectionTestResult(ok=True, message=message)


# pytest would otherwise collect this imported function as a test in any test module.
test_smtp_connection.__test__ = False  # type: ignore[attr-defined]
