"""What the POP3 and SMTP clients share: verified TLS, the error base class, secret scrubbing."""

from __future__ import annotations

import ssl
from typing import ClassVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _


class MailServerError(Exception):
    """A mail server operation failed.

    ``code``: a short machine name ("auth_failed", "timeout", …) for status columns and tests.
    ``user_message``: the plain sentence for the person (lazy, translatable; never the server's
    raw reply, never a password). ``detail``: what the operator's log gets (passwords scrubbed).
    """

    code: ClassVar[str] = "protocol"
    default_message: ClassVar[Promise | str] = _(
        "The mail server answered in a way RecruitMail did not understand."
    )

    def __init__(self, detail: str = "", *, message: Promise | str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self._message = message

    @property
    def user_message(self) -> Promise | str:
        """The sentence to show (``str()`` it to render)."""
        return self._message if self._message is not None else self.default_message

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}" if self.detail else self.code


def as_text(value: bytes | str) -> str:
    """Raw protocol text as str (undecodable bytes replaced)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def scrub_secret(text: bytes | str, secret: str) -> str:
    """``text`` as str with ``secret`` blanked: a hostile server may echo a password back."""
    text = as_text(text)
    return text.replace(secret, "********") if secret else text


def mail_tls_context(accept_self_signed: bool) -> ssl.SSLContext:
    """Verified TLS: system CAs plus MAIL_CA_FILE, host name checked, TLS 1.2 or later.

    ``accept_self_signed`` (an admin's per-mailbox choice) accepts any certificate: still
    encrypted against eavesdropping, no longer authenticated against an active attacker.
    """
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.MAIL_CA_FILE:
        try:
            context.load_verify_locations(cafile=settings.MAIL_CA_FILE)
        except (OSError, ssl.SSLError) as exc:
            raise ImproperlyConfigured(
                f"MAIL_CA_FILE ({settings.MAIL_CA_FILE}) cannot be read as a CA bundle: {exc}"
            ) from exc
    if accept_self_signed:
        # Order matters: check_hostname must be off before verify_mode can be CERT_NONE.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
