"""The poll lease: at most one worker polls a mailbox at a time, and a crashed worker's lease runs out.

Taken with a compare-and-set UPDATE (healthchecks' pattern): the row changes only if no live
lease is on it, and the caller proceeds only if exactly one row changed. No row lock is held
while the worker talks to the POP3 server.

Every time here is the database's clock (``Now()``), never the worker's: workers run on
several machines, and a worker whose clock ran ahead would otherwise see a live lease as
expired and start a second poll of the same mailbox.

Why a redelivered task cannot start a second poll: the poll task's hard time limit is
MAIL_POLL_LEASE_SECONDS from the task's start, and the lease, taken after that start, runs at
least as long (renewed while messages are fetched). Redis redelivers an unacknowledged task
only after its visibility timeout (MAIL_POLL_LEASE_SECONDS + 300 s, see settings), and a copy
that arrives while the first poll lives finds the lease taken and returns.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.db.models import DateTimeField, ExpressionWrapper, Q
from django.db.models.functions import Now

from mailboxes.models import Mailbox


def _database_time_in(seconds: int | None) -> ExpressionWrapper:
    """The database's now plus ``seconds`` (the lease length by default), as an expression."""
    length = timedelta(seconds=seconds or settings.MAIL_POLL_LEASE_SECONDS)
    return ExpressionWrapper(Now() + length, output_field=DateTimeField())


def lease_acquire(*, mailbox_id: int, seconds: int | None = None) -> str | None:
    """Take the mailbox's lease; return its token, or None if another worker holds it."""
    token = secrets.token_hex(16)
    taken = (
        Mailbox.objects.filter(pk=mailbox_id)
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=Now()))
        .update(lease_token=token, lease_expires_at=_database_time_in(seconds))
    )
    return token if taken == 1 else None


def lease_renew(*, mailbox_id: int, token: str, seconds: int | None = None) -> bool:
    """Extend our lease; False means it was lost (expired and taken by another worker)."""
    return (
        Mailbox.objects.filter(pk=mailbox_id, lease_token=token).update(
            lease_expires_at=_database_time_in(seconds)
        )
        == 1
    )


def lease_release(*, mailbox_id: int, token: str) -> None:
    Mailbox.objects.filter(pk=mailbox_id, lease_token=token).update(
        lease_token="", lease_expires_at=None
    )
