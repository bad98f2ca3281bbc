"""Deleting mail for good: the organisation's retention period, and the deletion that erasing a
record shares with it.

What a deleted message takes with it: its links, addresses and attachments (database cascades),
the threads it leaves empty, and the stored files (raw bytes, attachment contents) that no other
message still uses; files are shared by content hash (``mailboxes.mailstore``), across mailboxes
and organisations. What it leaves: its ``ServerMessage`` rows (their ``message`` becomes NULL),
which keep the UID settled, so a message still on a "keep on server" mailbox is never imported
again.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from mailboxes.models import Attachment, Message, SendState, StoredBlob, Thread
from records.models import Organization

logger = logging.getLogger(__name__)

PURGE_BATCH_SIZE = 500


@dataclass
class DeletedMail:
    messages: int = 0
    attachments: int = 0
    files: int = 0


def _delete_files_unless_used(*, raw_names: set[str], blob_names: set[str]) -> None:
    """Remove stored files once the deletion has committed, unless a row uses them again.

    After commit, because a rolled-back deletion must find its files. The second look narrows
    (it cannot close: the importer writes a file before its transaction commits) the window in
    which a concurrent import of the same bytes reuses a file being removed.
    """
    for name in sorted(raw_names):
        if not Message.objects.filter(raw=name).exists():
            default_storage.delete(name)
    for name in sorted(blob_names):
        if not StoredBlob.objects.filter(file=name).exists():
            default_storage.delete(name)


def messages_delete(*, message_ids: Collection[int]) -> DeletedMail:
    """Delete these messages with everything only they use; files go after commit.

    Call inside a transaction (the caller's, so an erase is all-or-nothing) or alone (one
    transaction of its own). ServerMessage rows stay (SET_NULL): the UID stays known.
    """
    ids = sorted(set(message_ids))
    if not ids:
        return DeletedMail()
    with transaction.atomic():
        rows = Message.objects.filter(pk__in=ids)
        raw_names = set(rows.exclude(raw="").values_list("raw", flat=True))
        thread_ids = set(rows.exclude(thread=None).values_list("thread_id", flat=True))
        attachments = Attachment.objects.filter(message_id__in=ids)
        blob_ids = set(attachments.values_list("blob_id", flat=True))
        attachment_count = attachments.count()
        # The cascade takes the links, addresses and attachments; ServerMessage.message is
        # SET_NULL, so the POP3 UID bookkeeping survives.
        deleted, per_model = rows.delete()
        message_count = per_model.get(Message._meta.label, 0)

        # Rows of other messages (any organisation) that still use a file keep it.
        still_used_raw = set(
            Message.objects.filter(raw__in=raw_names).values_list("raw", flat=True)
        )
        orphan_blobs = StoredBlob.objects.filter(pk__in=blob_ids).exclude(
            Exists(Attachment.objects.filter(blob_id=OuterRef("pk")))
        )
        blob_names = set(orphan_blobs.values_list("file", flat=True))
        # A concurrent import that picked one of these blob rows fails on its foreign key at
        # commit and retries, storing the content again.
        orphan_blobs.delete()
        Thread.objects.filter(pk__in=thread_ids).exclude(
            Exists(Message.objects.filter(thread_id=OuterRef("pk")))
        ).delete()
        unused_raw = raw_names - still_used_raw
        transaction.on_commit(
            lambda: _delete_files_unless_used(raw_names=unused_raw, blob_names=blob_names)
        )
    logger.info(
        "deleted %s messages (%s rows), %s attachments, %s files",
        message_count,
        deleted,
        attachment_count,
        len(unused_raw) + len(blob_names),
    )
    return DeletedMail(
        messages=message_count,
        attachments=attachment_count,
        files=len(unused_raw) + len(blob_names),
    )


def retention_cutoff(*, days: int | None, now: datetime | None = None) -> datetime | None:
    """Mail dated before this is past a retention period of ``days`` (None: kept for ever)."""
    if not days:
        return None
    return (now or timezone.now()) - timedelta(days=days)


def expired_messages(*, organization: Organization, cutoff: datetime) -> QuerySet[Message]:
    """The organisation's messages dated before ``cutoff``.

    By ``sort_at``, the date the hub shows and sorts by: the Date header, or the arrival time
    when the header is missing or in the future. So "older than N days" means what a reader
    sees in the lists, and old mail imported today (a first import) goes as its age says,
    not N days after its import (``created_at``), which would keep a ten-year-old message
    another N days. The (organization, -sort_at) index serves this query. A message being
    sent right now is left to the next run.
    """
    return (
        Message.objects.filter(organization=organization, sort_at__lt=cutoff)
        .exclude(send_state=SendState.SENDING)
        .order_by("sort_at", "pk")
    )


def mail_retention_purge(
    *,
    organization: Organization,
    now: datetime | None = None,
    batch_size: int = PURGE_BATCH_SIZE,
) -> int:
    """Delete the organisation's mail older than its retention period; return how many.

    In batches, each its own transaction, so a large backlog neither holds locks for long nor
    loses its progress when the worker stops. Each run goes in the audit trail.
    """
    from sharing.models import AuditAction, SharingAuditEntry

    cutoff = retention_cutoff(days=organization.mail_retention_days, now=now)
    if cutoff is None:
        return 0
    total = 0
    while True:
        ids = list(
            expired_messages(organization=organization, cutoff=cutoff).values_list("pk", flat=True)[
                :batch_size
            ]
        )
        if not ids:
            break
        total += messages_delete(message_ids=ids).messages
    SharingAuditEntry.objects.create(
        organization=organization,
        actor=None,
        action=AuditAction.RETENTION_PURGED,
        counts={"messages": total, "days": organization.mail_retention_days},
    )
    logger.info(
        "retention purge of organisation %s: %s messages older than %s days",
        organization.pk,
        total,
        organization.mail_retention_days,
    )
    return total
