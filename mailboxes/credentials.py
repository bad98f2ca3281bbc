"""Mail server passwords, encrypted at rest with Fernet.

Keys come from the ``FERNET_KEYS`` setting, newest first. MultiFernet encrypts with the first
and decrypts with any, so an operator adds a new key in front, runs ``manage.py
rotate_mail_credentials`` and later drops the old key.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class CredentialUnreadable(Exception):
    """A stored password cannot be decrypted with any configured key."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode("ascii")) for key in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "FERNET_KEYS holds a value that is not a Fernet key (32 url-safe base64 bytes)."
        ) from exc


def _current() -> MultiFernet:
    return _fernet(tuple(settings.FERNET_KEYS))


def _newest() -> MultiFernet:
    return _fernet(tuple(settings.FERNET_KEYS[:1]))


def encrypt_secret(plaintext: str) -> str:
    """Return a Fernet token for ``plaintext`` (empty stays empty: no password set)."""
    if not plaintext:
        return ""
    return _current().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt_secret(token: str) -> str:
    if not token:
        return ""
    try:
        return _current().decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken as exc:
        raise CredentialUnreadable(
            "A stored mail password cannot be decrypted with the configured FERNET_KEYS."
        ) from exc


def secret_is_current(token: str) -> bool:
    """Whether ``token`` is already encrypted under the newest key (nothing to rotate)."""
    if not token:
        return True
    try:
        _newest().decrypt(token.encode("ascii"))
    except (InvalidToken, UnicodeEncodeError):
        return False
    return True


def rotate_secret(token: str) -> str:
    """Re-encrypt ``token`` under the newest key."""
    if not token:
        return ""
    try:
        return _current().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeEncodeError) as exc:
        # A token is ASCII by construction: anything else was damaged, like a wrong key.
        raise CredentialUnreadable("A stored mail password cannot be decrypted.") from exc
