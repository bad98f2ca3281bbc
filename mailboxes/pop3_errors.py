"""What can go wrong talking to a POP3 server, as exceptions with a code and a plain sentence.

Every failure of ``mailboxes.pop3`` is a ``Pop3Error`` with:

- ``code``: a short machine string the pipeline stores on the mailbox and decides on
  (``auth_failed`` and ``login_refused`` pause polling; the others back off and retry);
- ``user_message``: plain English for the mailbox owner (lazy, so it can be translated), never
  the server's raw reply and never a password;
- ``detail``: the raw reason (server reply, OpenSSL message) for operator logs, with the
  password scrubbed out in case a hostile server echoes it back.

The classes are re-exported by ``mailboxes.pop3``; import them from there.
"""

from __future__ import annotations

import contextlib
import poplib
import re
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import ClassVar

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from mailboxes.hostcheck import DisallowedHost
from mailboxes.mailserver import MailServerError, as_text  # noqa: F401 (as_text re-exported)

EOF = "-ERR EOF"  # what poplib raises error_proto with when the stream ends
LINE_TOO_LONG = "line too long"  # what poplib raises error_proto with for an over-long line
_RESPONSE_CODE = re.compile(rb"^-ERR\s+\[([^\]]+)\]", re.IGNORECASE)


class Pop3Error(MailServerError):
    """Base class: a POP3 operation failed. See the module docstring for the attributes."""

    default_message: ClassVar[Promise | str] = _(
        "The mail server answered in a way RecruitMail did not understand."
    )


class AuthFailed(Pop3Error):
    """The server rejected the user name or password (-ERR to USER/PASS, RFC 3206 [AUTH])."""

    code = "auth_failed"
    default_message = _(
        "The mail server rejected the user name or password. Check them and save the mailbox again."
    )


class LoginRefused(Pop3Error):
    """RFC 3206 [SYS/PERM]: the login is refused for a lasting reason other than the password,
    e.g. POP3 switched off for the account. Retrying will not help until someone acts."""

    code = "login_refused"
    default_message = _(
        "The mail server refused the login for a reason other than the password, for example "
        "because POP3 access is switched off for this account. Check the account's settings "
        "with the mail provider."
    )


class TemporarilyUnavailable(Pop3Error):
    """RFC 3206 [SYS/TEMP], RFC 2449 [IN-USE] or [LOGIN-DELAY]: try again later, unchanged."""

    code = "temporary"
    default_message = _(
        "The mail server is temporarily unable to open the mailbox. RecruitMail will try "
        "again later."
    )


IN_USE_MESSAGE = _(
    "The mailbox is in use by another mail program, or was checked too recently. "
    "RecruitMail will try again later."
)


class CertificateError(Pop3Error):
    """The server's TLS certificate could not be verified; ``reason`` says why.

    ``reason`` is one of "expired", "not_yet_valid", "self_signed", "untrusted", "wrong_host",
    "revoked" or "other", read from OpenSSL's verify code.
    """

    code = "certificate"
    default_message = _("The mail server's security certificate could not be verified.")

    # OpenSSL X509_V_ERR_* codes (include/openssl/x509_vfy.h).
    _REASONS: ClassVar[dict[int, str]] = {
        2: "untrusted",  # UNABLE_TO_GET_ISSUER_CERT
        9: "not_yet_valid",  # CERT_NOT_YET_VALID
        10: "expired",  # CERT_HAS_EXPIRED
        18: "self_signed",  # DEPTH_ZERO_SELF_SIGNED_CERT
        19: "self_signed",  # SELF_SIGNED_CERT_IN_CHAIN
        20: "untrusted",  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        21: "untrusted",  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
        23: "revoked",  # CERT_REVOKED
        62: "wrong_host",  # HOSTNAME_MISMATCH
        64: "wrong_host",  # IP_ADDRESS_MISMATCH
    }
    _MESSAGES: ClassVar[dict[str, Promise]] = {
        "expired": _(
            "The mail server's security certificate has expired. The mail provider needs to "
            "renew it."
        ),
        "not_yet_valid": _(
            "The mail server's security certificate is not valid yet. Check the date and time "
            "of the mail server and of this server."
        ),
        "self_signed": _(
            "The mail server uses a self-signed security certificate, which cannot be "
            "verified. If you trust this server, an admin can allow a self-signed certificate "
            "for this mailbox."
        ),
        "untrusted": _(
            "The mail server's security certificate was not issued by a trusted authority, or "
            "the server did not send its full certificate chain."
        ),
        "wrong_host": _(
            "The mail server's security certificate was issued for a different server name. "
            "Use the exact name the mail provider gives (not an IP address or an alias)."
        ),
        "revoked": _("The mail server's security certificate has been revoked."),
    }

    def __init__(self, detail: str = "", *, reason: str = "other") -> None:
        super().__init__(detail, message=self._MESSAGES.get(reason))
        self.reason = reason

    @classmethod
    def from_ssl(cls, exc: ssl.SSLCertVerificationError) -> CertificateError:
        """Classify an OpenSSL verification failure by its verify code."""
        reason = cls._REASONS.get(exc.verify_code or 0, "other")
        return cls(f"{exc.verify_code} {exc.verify_message}", reason=reason)


class TlsError(Pop3Error):
    """The TLS handshake failed for a reason other than the certificate."""

    code = "tls"
    default_message = _(
        "A secure connection to the mail server could not be set up. Check that the port "
        "matches the security setting: usually 995 for SSL/TLS and 110 for STARTTLS."
    )


class StlsNotOffered(Pop3Error):
    """STARTTLS was chosen but the server does not offer STLS (RFC 2595 §4); no password sent."""

    code = "stls_not_offered"
    default_message = _(
        "The mail server does not offer STARTTLS on this port, so RecruitMail did not send "
        "the password. Choose SSL/TLS (usually port 995) instead."
    )


class HostNotFound(Pop3Error):
    """The host name does not resolve (DNS)."""

    code = "host_not_found"
    default_message = _("The mail server name could not be found. Check its spelling.")


DNS_UNAVAILABLE_MESSAGE = _(
    "The mail server name could not be looked up just now. RecruitMail will try again later."
)


class InvalidHost(Pop3Error):
    """The stored host is not a valid name or address (see hostcheck.validate_host_syntax)."""

    code = "invalid_host"
    default_message = _("The mail server name is not a valid host name or IP address.")


class HostNotAllowed(Pop3Error):
    """The host resolves to an address the hostcheck refuses (loopback, private, ...)."""

    code = "disallowed_host"
    default_message = _(
        "The mail server name points to a private, loopback or link-local network address, "
        "which this installation does not allow."
    )


class Refused(Pop3Error):
    """The TCP connection was refused: nothing listens on that port."""

    code = "refused"
    default_message = _("The mail server refused the connection. Check the server name and port.")


class Unreachable(Pop3Error):
    """The TCP connection failed for a network reason (no route, network down)."""

    code = "unreachable"
    default_message = _("The mail server could not be reached over the network.")


class Timeout(Pop3Error):
    """Connecting, or waiting for any reply line, took longer than the timeout."""

    code = "timeout"
    default_message = _(
        "The mail server did not answer in time. If this keeps happening, check the port "
        "and security setting."
    )


class ConnectionLost(Pop3Error):
    """The connection closed or broke before the server finished its reply."""

    code = "connection_lost"
    default_message = _(
        "The connection to the mail server was lost. RecruitMail will try again later."
    )


class ProtocolError(Pop3Error):
    """The server answered -ERR where +OK was needed, or sent something malformed."""

    code = "protocol"


class MessageRefused(ProtocolError):
    """The server answered a command about one message (RETR, TOP) with a plain -ERR.

    The reply is a whole, well-formed line and no message data follows it (RFC 1939 §3), so
    the session is still in step and can go on with other messages; the error is about this
    message, not the connection.
    """


LINE_TOO_LONG_MESSAGE = _(
    "The mail server sent a line far longer than mail allows, so the message could not be read."
)
GREETING_REFUSED_MESSAGE = _("The mail server turned the connection away.")
QUIT_FAILED_MESSAGE = _(
    "The mail server reported an error when signing off, so messages marked for deletion may "
    "still be on the server."
)
COMMAND_REFUSED_MESSAGE = _("The mail server refused a request for a message.")


def response_code(reply: bytes) -> str:
    """The RFC 2449 §8 response code of an -ERR reply, upper-case ("" when there is none)."""
    match = _RESPONSE_CODE.match(reply)
    return match.group(1).decode("ascii", "replace").upper() if match else ""


def error_for_reply(reply: bytes, detail: str, *, during_login: bool) -> Pop3Error:
    """The Pop3Error an -ERR ``reply`` stands for (``detail`` is the scrubbed reply text).

    Response codes (RFC 2449 §8, RFC 3206) take precedence: [SYS/TEMP], [IN-USE] and
    [LOGIN-DELAY] are temporary whatever the command, [SYS/PERM] is a lasting refusal, [AUTH]
    a credentials problem. Without a code, -ERR during USER/PASS means bad credentials.
    """
    code = response_code(reply)
    if code in ("IN-USE", "LOGIN-DELAY"):
        return TemporarilyUnavailable(detail, message=IN_USE_MESSAGE)
    if code.startswith("SYS/TEMP"):
        return TemporarilyUnavailable(detail)
    if code.startswith("SYS/PERM"):
        return LoginRefused(detail)
    if code.startswith("AUTH") or during_login:
        return AuthFailed(detail)
    return ProtocolError(detail, message=COMMAND_REFUSED_MESSAGE)


def error_for_host(host: str, exc: Exception) -> Pop3Error:
    """The Pop3Error for a failed ``hostcheck.check_mail_host`` (refused, invalid, no DNS)."""
    if isinstance(exc, DisallowedHost):
        return HostNotAllowed(f"{host} -> {exc.address}")
    if isinstance(exc, socket.gaierror):
        if exc.errno in (socket.EAI_AGAIN, getattr(socket, "EAI_SYSTEM", None)):
            return HostNotFound(f"{host}: {exc}", message=DNS_UNAVAILABLE_MESSAGE)
        return HostNotFound(f"{host}: {exc}")
    return InvalidHost(f"{host!r}: {exc}")


@contextlib.contextmanager
def translate_errors(
    scrub: Callable[[bytes | str], str], *, handshake: bool = False
) -> Iterator[None]:
    """Turn socket, ssl and poplib exceptions raised inside into Pop3Errors.

    ``scrub`` turns raw text into log-safe text. With ``handshake`` (connecting and the TLS
    handshake), failures are set-up problems (TlsError, Unreachable); otherwise an OS-level
    error means the established connection was lost.
    """
    try:
        yield
    except Pop3Error:
        raise
    except poplib.error_proto as exc:
        text = exc.args[0] if exc.args else ""
        if text == EOF:
            raise ConnectionLost("connection closed before the reply ended") from None
        if text == LINE_TOO_LONG:
            raise ProtocolError("line too long", message=LINE_TOO_LONG_MESSAGE) from None
        raise ProtocolError(scrub(text)) from None
    except ssl.SSLCertVerificationError as exc:
        raise CertificateError.from_ssl(exc) from None
    except TimeoutError as exc:  # socket.timeout is TimeoutError since Python 3.10
        raise Timeout(str(exc) or "timed out") from None
    except ConnectionRefusedError as exc:
        raise Refused(str(exc)) from None
    except (ssl.SSLError, ConnectionError) as exc:
        # In the handshake, a reset or a garbled record usually means the port does not speak
        # TLS (e.g. SSL/TLS chosen for port 110); later it is a broken connection.
        if handshake:
            raise TlsError(str(exc)) from None
        raise ConnectionLost(str(exc)) from None
    except OSError as exc:
        if handshake:
            raise Unreachable(str(exc)) from None
        raise ConnectionLost(str(exc)) from None


def server_reply(exc: poplib.error_proto) -> bytes | None:
    """The server's -ERR line when ``exc`` carries one; None for poplib's own str errors."""
    value = exc.args[0] if exc.args else None
    return value if isinstance(value, bytes) else None
