"""Writes a reader makes to messages: mark read on opening, delete in the hub.

Both are the owner's alone (the state is the owner's mailbox state; a colleague reading shared
mail changes nothing), and both are single conditional UPDATEs, so a double click or two tabs
change the row once.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.utils import timezone
from django.utils.translation import gettext as _

from mailboxes.models import Message

logger = logging.getLogger(__name__)


def message_mark_read(*, message: Message, reader: Any) -> bool:
    """Mark ``message`` read when its owner opens it; True when this changed the row."""
    if message.owner_id != reader.pk or message.is_read:
        return False
    changed = Message.objects.filter(pk=message.pk, owner_id=reader.pk, is_read=False).update(
        is_read=True
    )
    message.is_read = True
    return changed == 1


def message_delete(*, message: Message, user: Any) -> bool:
    """Delete ``message`` in the hub, for its owner only; True when this changed the row.

    The row, its raw bytes and its links stay (a hand-over or an audit may need them); it
    leaves every list, thread, search and download, and a mailbox whose deletion policy is
    "when deleted here" deletes it from the POP3 server at its next poll (``deleted_at``).
    """
    if message.owner_id != user.pk:
        raise PermissionDenied(_("Only the owner of a message can delete it."))
    now = timezone.now()
    changed = Message.objects.filter(
        pk=message.pk, owner_id=user.pk, deleted_at__isnull=True
    ).update(deleted_at=now)
    if changed:
        message.deleted_at = now
        logger.info("message deleted in the hub: id=%s owner=%s", message.pk, user.pk)
    return changed == 1


def draft_discard(*, draft_id: int, user: Any) -> bool:
    """Drop the user's unsent draft (replaced by the corrected one the form sends again)."""
    from mailboxes.models import MessageOrigin, SendState

    deleted, _per_model = Message.objects.filter(
        pk=draft_id,
        owner_id=user.pk,
        origin=MessageOrigin.HUB,
        send_state__in=[SendState.DRAFT, SendState.FAILED],
    ).delete()
    return bool(deleted)
