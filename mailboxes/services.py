"""Writes to mailbox accounts: create, edit, switch the active one, change passwords."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from mailboxes.models import Mailbox, MailboxStatus
from records.models import User

logger = logging.getLogger(__name__)


def mailbox_create(
    *,
    owner: User,
    settings_data: dict[str, Any],
    pop3_password: str,
    smtp_password: str = "",
    make_active: bool,
    sharing_permission: str = "private",
) -> Mailbox:
    """Create a mailbox for ``owner`` (Private sharing unless chosen). The first mailbox is always active."""
    from sharing.models import MailboxSharing

    with transaction.atomic():
        mailbox = Mailbox(
            owner=owner, organization_id=owner.membership.organization_id, **settings_data
        )
        mailbox.set_pop3_password(pop3_password)
        if not mailbox.smtp_same_credentials:
            mailbox.set_smtp_password(smtp_password)
        mailbox.save()
        MailboxSharing.objects.create(mailbox=mailbox, permission=sharing_permission)
        if make_active or not Mailbox.objects.filter(owner=owner, is_active=True).exists():
            mailbox_activate(mailbox=mailbox)
    logger.info("mailbox created: id=%s owner=%s host=%s", mailbox.pk, owner.pk, mailbox.pop3_host)
    return mailbox


def mailbox_update(*, mailbox: Mailbox, settings_data: dict[str, Any]) -> Mailbox:
    """Save edited settings; passwords are untouched. A changed server resets an auth pause."""
    server_changed = any(
        settings_data.get(field, getattr(mailbox, field)) != getattr(mailbox, field)
        for field in ("pop3_host", "pop3_port", "pop3_username", "pop3_security")
    )
    scope_fields = ("first_import_scope", "first_import_since", "first_import_newest")
    scope_changed = any(
        field in settings_data and settings_data[field] != getattr(mailbox, field)
        for field in scope_fields
    )
    for field, value in settings_data.items():
        setattr(mailbox, field, value)
    if server_changed and mailbox.status == MailboxStatus.AUTH_FAILED:
        _resume_polling(mailbox)
    mailbox.save()
    if scope_changed:
        mailbox_widen_import_scope(mailbox=mailbox, settings_data={})
    return mailbox


def mailbox_activate(*, mailbox: Mailbox) -> Mailbox:
    """Make ``mailbox`` its owner's one active mailbox.

    The partial unique index allows one active row per owner, so the others are switched off
    first, in the same transaction; the owner's row lock serialises two switches at once.
    """
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=mailbox.owner_id).first()
        Mailbox.objects.filter(owner_id=mailbox.owner_id, is_active=True).exclude(
            pk=mailbox.pk
        ).update(is_active=False)
        mailbox.is_active = True
        mailbox.next_poll_at = timezone.now()
        mailbox.save(update_fields=["is_active", "next_poll_at", "updated_at"])
    return mailbox


def _resume_polling(mailbox: Mailbox) -> None:
    mailbox.status = MailboxStatus.NEW
    mailbox.status_code = ""
    mailbox.status_message = ""
    mailbox.status_changed_at = timezone.now()
    mailbox.consecutive_failures = 0
    mailbox.next_poll_at = timezone.now()


def mailbox_set_pop3_password(*, mailbox: Mailbox, password: str) -> Mailbox:
    """Store a new incoming password; a mailbox paused for a rejected password polls again at once."""
    mailbox.set_pop3_password(password)
    if mailbox.status == MailboxStatus.AUTH_FAILED:
        _resume_polling(mailbox)
    mailbox.save()
    logger.info("mailbox incoming password changed: id=%s", mailbox.pk)
    return mailbox


def mailbox_set_smtp_password(*, mailbox: Mailbox, password: str) -> Mailbox:
    mailbox.set_smtp_password(password)
    if mailbox.smtp_same_credentials:
        # A separate outgoing password means separate credentials from now on.
        mailbox.smtp_same_credentials = False
        mailbox.smtp_username = mailbox.smtp_username or mailbox.pop3_username
    mailbox.save(
        update_fields=[
            "smtp_password_token",
            "smtp_same_credentials",
            "smtp_username",
            "updated_at",
        ]
    )
    logger.info("mailbox outgoing password changed: id=%s", mailbox.pk)
    return mailbox


def mailbox_delete(*, mailbox: Mailbox) -> None:
    """Remove the account. Its mail stays in the hub, owned by the same user."""
    mailbox.delete()


def quarantine_retry(*, mailbox: Mailbox, server_message_ids: list[int]) -> int:
    """Send quarantined messages back to the queue: the next poll tries them again."""
    from mailboxes.models import ServerMessage, ServerMessageState

    count = ServerMessage.objects.filter(
        mailbox=mailbox, pk__in=server_message_ids, state=ServerMessageState.QUARANTINED
    ).update(state=ServerMessageState.FAILED, failures=0)
    if count:
        Mailbox.objects.filter(pk=mailbox.pk).update(next_poll_at=timezone.now())
    return count


def mailbox_widen_import_scope(*, mailbox: Mailbox, settings_data: dict[str, Any]) -> Mailbox:
    """Change the first-import scope; what it left out is evaluated again on the next poll."""
    from mailboxes.models import ServerMessage, ServerMessageState

    with transaction.atomic():
        for field, value in settings_data.items():
            setattr(mailbox, field, value)
        mailbox.first_import_pending = True
        mailbox.next_poll_at = timezone.now()
        mailbox.save()
        ServerMessage.objects.filter(
            mailbox=mailbox, state=ServerMessageState.OUT_OF_SCOPE
        ).delete()
    return mailbox
