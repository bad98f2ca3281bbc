"""What the hub knows of a mailbox's POP3 server: the UIDs it has seen, and which of them the
deletion policy removes from the server at this poll.

Only committed UIDs are ever proposed for DELE (a ServerMessage row exists only once its
message is committed); the DELEs take effect at QUIT (RFC 1939 §6), which the importer sends
only when everything it retrieved is committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from mailboxes.models import (
    DeletionPolicy,
    Mailbox,
    Message,
    ServerMessage,
    ServerMessageState,
    uid_digest,
)


@dataclass
class KnownUid:
    """A ServerMessage row, as the poll needs it."""

    pk: int
    state: str
    failures: int
    message_id: int | None
    first_seen_at: datetime
    deleted_from_server_at: datetime | None


def known_uids(mailbox: Mailbox) -> dict[str, KnownUid]:
    """Every UID the hub has seen on this mailbox's server, in one query."""
    return {
        uid_hash: KnownUid(pk, state, failures, message_id, first_seen_at, deleted_at)
        for uid_hash, pk, state, failures, message_id, first_seen_at, deleted_at in ServerMessage.objects.filter(
            mailbox=mailbox
        ).values_list(
            "uid_hash",
            "pk",
            "state",
            "failures",
            "message_id",
            "first_seen_at",
            "deleted_from_server_at",
        )
    }


def deletions_due(
    mailbox: Mailbox, *, pop_uids: dict[int, str] | None, known: dict[str, KnownUid]
) -> dict[int, int]:
    """{ServerMessage pk: message number} to DELE under the mailbox's policy; committed UIDs only.

    ``pop_uids``: message number -> UID, or content UID ("sha256:…") for a message that has
    no usable UID and was retrieved in this session (``mailboxes.importer._identities``); a
    number missing from it is never deleted.
    """
    if mailbox.deletion_policy == DeletionPolicy.KEEP or not pop_uids:
        return {}
    counts: dict[str, int] = {}
    for uid in pop_uids.values():
        counts[uid] = counts.get(uid, 0) + 1
    now = timezone.now()
    deleted_here: set[int] = set()
    if mailbox.deletion_policy == DeletionPolicy.WHEN_DELETED_HERE:
        deleted_here = set(
            Message.objects.filter(mailbox=mailbox, deleted_at__isnull=False).values_list(
                "pk", flat=True
            )
        )
    result: dict[int, int] = {}
    for number, uid in pop_uids.items():
        if counts[uid] > 1:
            continue  # an ambiguous UID could name a message we have not committed
        row = known.get(uid_digest(uid))
        if row is None or row.state not in (
            ServerMessageState.IMPORTED,
            ServerMessageState.DUPLICATE,
        ):
            continue
        if row.deleted_from_server_at is not None:
            continue
        policy = mailbox.deletion_policy
        if (
            policy == DeletionPolicy.AFTER_IMPORT
            or (
                policy == DeletionPolicy.AFTER_DAYS
                and row.first_seen_at <= now - timedelta(days=mailbox.delete_after_days or 0)
            )
            or (
                policy == DeletionPolicy.WHEN_DELETED_HERE
                # In the bin here, or gone from the hub altogether (purged by the retention
                # period, or erased with its candidate): the row outlives its message.
                and (row.message_id in deleted_here or row.message_id is None)
            )
        ):
            result[row.pk] = number
    return result


def mark_gone(mailbox: Mailbox, uids: dict[int, str] | None, known: dict[str, KnownUid]) -> None:
    """Note UIDs that left the server by other means (another client, the provider), so a reused UID
    is later seen as a new message."""
    if uids is None:
        return
    present = {uid_digest(uid) for uid in uids.values()}
    gone = [
        row.pk
        for digest, row in known.items()
        if digest not in present and row.deleted_from_server_at is None
    ]
    for start in range(0, len(gone), 1000):
        ServerMessage.objects.filter(pk__in=gone[start : start + 1000]).update(
            deleted_from_server_at=timezone.now()
        )
