"""The poll lease: at most one worker polls a mailbox at a time, and a crashed worker's lease runs out.

Taken with a compare-and-set UPDATE (healthchecks' pattern): the row changes only if no live
lease is on it, and the caller proceeds only if exactly one row changed. No row lock is held
while the worker talks to the POP3 server.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from mailboxes.models import Mailbox


def lease_acquire(*, mailbox_id: int, seconds: int | None = None) -> str | None:
    """Take the mailbox's lease; return its token, or None if another worker holds it."""
    now = timezone.now()
    token = secrets.token_hex(16)
    taken = (
        Mailbox.objects.filter(pk=mailbox_id)
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now))
        .update(
            lease_token=token,
            lease_expires_at=now + timedelta(seconds=seconds or settings.MAIL_POLL_LEASE_SECONDS),
        )
    )
    return token if taken == 1 else None


def lease_renew(*, mailbox_id: int, token: str, seconds: int | None = None) -> bool:
    """Extend our lease; False means it was lost (expired and taken by another worker)."""
    expires = timezone.now() + timedelta(seconds=seconds or settings.MAIL_POLL_LEASE_SECONDS)
    return (
        Mailbox.objects.filter(pk=mailbox_id, lease_token=token).update(lease_expires_at=expires)
        == 1
    )


def lease_release(*, mailbox_id: int, token: str) -> None:
    Mailbox.objects.filter(pk=mailbox_id, lease_token=token).update(
        lease_token="", lease_expires_at=None
    )
