"""What can go wrong talking to an SMTP server, as exceptions with a code and a plain sentence.

Every failure of ``mailboxes.smtp`` is an ``SmtpError`` with the same three attributes as the
POP3 client's errors (``mailboxes.pop3_errors``):

- ``code``: a short machine string, stored with a failed message and used in tests;
- ``user_message``: plain English for the writer (lazy, so it can be translated), never the
  server's raw reply and never a password;
- ``detail``: the raw reason (server reply, OpenSSL message) for operator logs, with the
  password scrubbed out in case a hostile server echoes it back.

The classes are re-exported by ``mailboxes.smtp``; import them from there.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
from collections.abc import Callable, Iterator, Mapping
from typing import ClassVar

from django.utils.functional import Promise
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from mailboxes.hostcheck import DisallowedHost
from mailboxes.mailserver import MailServerError, as_text  # noqa: F401 (as_text re-exported)
from mailboxes.pop3_errors import CertificateError as _Pop3CertificateError


class SmtpError(MailServerError):
    """Base class: an SMTP operation failed. See the module docstring for the attributes."""

    default_message: ClassVar[Promise | str] = _(
        "The outgoing mail server answered in a way RecruitMail did not understand."
    )


class AuthFailed(SmtpError):
    """The server rejected the login (535, or any 5xx to AUTH)."""

    code = "auth_failed"
    default_message = _(
        "The outgoing mail server rejected the user name or password. Check them in the "
        "mailbox settings."
    )


class AuthNotOffered(SmtpError):
    """A login is configured but the server does not offer AUTH (on this port, or before TLS)."""

    code = "auth_not_offered"
    default_message = _(
        "The outgoing mail server does not offer sign-in on this port. Check the port and "
        "security setting: usually 465 with SSL/TLS or 587 with STARTTLS."
    )


class EncryptionRequired(SmtpError):
    """RFC 4954 §6: 538, the server signs in only over an encrypted connection."""

    code = "encryption_required"
    default_message = _(
        "The outgoing mail server accepts a password only over an encrypted connection. "
        "Choose SSL/TLS or STARTTLS in the mailbox settings."
    )


class CertificateError(SmtpError):
    """The server's TLS certificate could not be verified; ``reason`` as in the POP3 client."""

    code = "certificate"
    default_message = _("The mail server's security certificate could not be verified.")

    def __init__(
        self, detail: str = "", *, message: Promise | str | None = None, reason: str = "other"
    ) -> None:
        super().__init__(detail, message=message)
        self.reason = reason

    @classmethod
    def from_ssl(cls, exc: ssl.SSLCertVerificationError) -> CertificateError:
        # The POP3 client already classifies OpenSSL's verify codes into reasons and sentences;
        # one table for both protocols, so they never explain the same failure differently.
        classified = _Pop3CertificateError.from_ssl(exc)
        return cls(classified.detail, message=classified.user_message, reason=classified.reason)


class TlsError(SmtpError):
    """The TLS handshake failed for a reason other than the certificate."""

    code = "tls"
    default_message = _(
        "A secure connection to the outgoing mail server could not be set up. Check that the "
        "port matches the security setting: usually 465 for SSL/TLS and 587 for STARTTLS."
    )


class StartTlsNotOffered(SmtpError):
    """STARTTLS was chosen but the server does not offer it (RFC 3207); no password was sent."""

    code = "starttls_not_offered"
    default_message = _(
        "The outgoing mail server does not offer STARTTLS on this port, so RecruitMail did not "
        "send the password. Choose SSL/TLS (usually port 465) instead."
    )


class HostNotFound(SmtpError):
    code = "host_not_found"
    default_message = _("The outgoing mail server name could not be found. Check its spelling.")


class InvalidHost(SmtpError):
    code = "invalid_host"
    default_message = _("The outgoing mail server name is not a valid host name or IP address.")


class HostNotAllowed(SmtpError):
    code = "disallowed_host"
    default_message = _(
        "The outgoing mail server name points to a private, loopback or link-local network "
        "address, which this installation does not allow."
    )


class Refused(SmtpError):
    """The TCP connection was refused: nothing listens on that port."""

    code = "refused"
    default_message = _(
        "The outgoing mail server refused the connection. Check the server name and port."
    )


class Unreachable(SmtpError):
    code = "unreachable"
    default_message = _("The outgoing mail server could not be reached over the network.")


class Timeout(SmtpError):
    code = "timeout"
    default_message = _(
        "The outgoing mail server did not answer in time. If this keeps happening, check the "
        "port and security setting."
    )


class ConnectionLost(SmtpError):
    code = "connection_lost"
    default_message = _("The connection to the outgoing mail server was lost.")


class TemporaryFailure(SmtpError):
    """A 4xx reply (RFC 5321 §4.2.1: transient): the same request may succeed later."""

    code = "temporary"
    default_message = _(
        "The outgoing mail server is temporarily unable to take the message. Try again in a "
        "few minutes."
    )


class SenderRefused(SmtpError):
    """MAIL FROM was refused (for example, the login may not send as this address)."""

    code = "sender_refused"
    default_message = _(
        "The outgoing mail server refused to send from this mailbox's address. Check that the "
        "email address in the mailbox settings belongs to the account you sign in with."
    )


class MessageRefused(SmtpError):
    """DATA was refused: too large, judged spam, or against a policy."""

    code = "message_refused"
    default_message = _(
        "The outgoing mail server refused the message itself, for example because it is too "
        "large or looked like spam."
    )


class RecipientRefused(SmtpError):
    """The server refused every recipient (RCPT TO); ``recipients`` maps each to its reply."""

    code = "recipient_refused"

    def __init__(self, recipients: Mapping[str, tuple[int, str]]) -> None:
        self.recipients = dict(recipients)
        detail = "; ".join(
            f"{address}: {code} {reply}" for address, (code, reply) in recipients.items()
        )
        super().__init__(detail, message=refused_recipients_message(self.recipients))


class ProtocolError(SmtpError):
    code = "protocol"


def refused_recipients_message(recipients: Mapping[str, object]) -> Promise | str:
    """The sentence naming refused recipients (an error when all were, a warning when some)."""
    return format_lazy(
        "{intro} {addresses}",
        intro=_("The outgoing mail server refused these recipients:"),
        addresses=", ".join(sorted(recipients)),
    )


GREETING_REFUSED_MESSAGE = _("The outgoing mail server turned the connection away.")
CREDENTIAL_CHARACTERS_MESSAGE = _(
    "The outgoing user name or password contains characters that SMTP sign-in cannot carry "
    "(only plain ASCII letters, digits and symbols)."
)


def error_for_host(host: str, exc: Exception) -> SmtpError:
    """The SmtpError for a failed ``hostcheck.check_mail_host``."""
    if isinstance(exc, DisallowedHost):
        return HostNotAllowed(f"{host} -> {exc.address}")
    if isinstance(exc, socket.gaierror):
        return HostNotFound(f"{host}: {exc}")
    return InvalidHost(f"{host!r}: {exc}")


def error_for_reply(code: int, reply: str, *, refused: type[SmtpError]) -> SmtpError:
    """A reply code that ended a step: 4xx is transient whatever the step (RFC 5321 §4.2.1),
    5xx means ``refused`` (the step's own lasting failure)."""
    if 400 <= code < 500:
        return TemporaryFailure(f"{code} {reply}")
    return refused(f"{code} {reply}")


@contextlib.contextmanager
def translate_errors(
    scrub: Callable[[bytes | str], str], *, handshake: bool = False
) -> Iterator[None]:
    """Turn socket, ssl and smtplib exceptions raised inside into SmtpErrors.

    ``scrub`` turns raw text into log-safe text. With ``handshake`` (connecting and TLS set-up)
    an OS-level failure is a set-up problem (TlsError, Unreachable); later it means the
    established connection was lost.
    """
    try:
        yield
    except SmtpError:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        if exc.smtp_code == 538:
            raise EncryptionRequired(scrub(exc.smtp_error)) from None
        raise error_for_reply(exc.smtp_code, scrub(exc.smtp_error), refused=AuthFailed) from None
    except smtplib.SMTPSenderRefused as exc:
        raise error_for_reply(exc.smtp_code, scrub(exc.smtp_error), refused=SenderRefused) from None
    except smtplib.SMTPRecipientsRefused as exc:
        refused = {
            address: (code, scrub(reply)) for address, (code, reply) in exc.recipients.items()
        }
        raise RecipientRefused(refused) from None
    except smtplib.SMTPDataError as exc:
        raise error_for_reply(
            exc.smtp_code, scrub(exc.smtp_error), refused=MessageRefused
        ) from None
    except smtplib.SMTPConnectError as exc:
        detail = f"{exc.smtp_code} {scrub(exc.smtp_error)}"
        if 400 <= exc.smtp_code < 500:
            raise TemporaryFailure(detail) from None
        raise ProtocolError(detail, message=GREETING_REFUSED_MESSAGE) from None
    except smtplib.SMTPServerDisconnected as exc:
        # smtplib reports a read that timed out as "Connection unexpectedly closed".
        if isinstance(exc.__context__, TimeoutError):
            raise Timeout(str(exc.__context__) or "timed out") from None
        raise ConnectionLost(scrub(str(exc))) from None
    except smtplib.SMTPResponseException as exc:
        detail = f"{exc.smtp_code} {scrub(exc.smtp_error)}"
        if 400 <= exc.smtp_code < 500:
            raise TemporaryFailure(detail) from None
        raise ProtocolError(detail) from None
    except smtplib.SMTPException as exc:  # e.g. "No suitable authentication method found."
        raise ProtocolError(scrub(str(exc))) from None
    except ssl.SSLCertVerificationError as exc:
        raise CertificateError.from_ssl(exc) from None
    except TimeoutError as exc:  # socket.timeout is TimeoutError since Python 3.10
        raise Timeout(str(exc) or "timed out") from None
    except ConnectionRefusedError as exc:
        raise Refused(str(exc)) from None
    except (ssl.SSLError, ConnectionError) as exc:
        # In the handshake, a reset or a garbled record usually means the port does not speak
        # TLS (e.g. SSL/TLS chosen for port 587); later it is a broken connection.
        if handshake:
            raise TlsError(str(exc)) from None
        raise ConnectionLost(str(exc)) from None
    except OSError as exc:
        if handshake:
            raise Unreachable(str(exc)) from None
        raise ConnectionLost(str(exc)) from None
