"""Writes to sharing settings, each recorded in the audit trail; and the preview of a change."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from mailboxes.models import Mailbox, Message, MessageLink
from records.models import Membership, Role, User
from sharing.models import (
    AuditAction,
    ExcludedDomain,
    MailboxSharing,
    Permission,
    SharingAuditEntry,
)

logger = logging.getLogger(__name__)


class SharingLocked(Exception):
    """An admin locked this user's mail settings: the owner cannot switch to Private."""


def sharing_for(mailbox: Mailbox) -> MailboxSharing:
    sharing, _created = MailboxSharing.objects.get_or_create(mailbox=mailbox)
    return sharing


def audit_add(
    *,
    mailbox: Mailbox | None,
    actor: User | None,
    action: str,
    old: str = "",
    new: str = "",
    subject_user: User | None = None,
    organization_id: int | None = None,
) -> None:
    SharingAuditEntry.objects.create(
        organization_id=organization_id or mailbox.organization_id,  # type: ignore[union-attr]
        actor=actor,
        mailbox=mailbox,
        subject_user=subject_user or (mailbox.owner if mailbox else None),
        action=action,
        old_value=old[:1000],
        new_value=new[:1000],
    )


def _apply(
    sharing: MailboxSharing, *, permission: str, excluded_domains: list[str], consolidate: bool
) -> None:
    sharing.permission = permission
    sharing.consolidate_client_mail = consolidate
    sharing.updated_at = timezone.now()
    sharing.save()
    ExcludedDomain.objects.filter(sharing=sharing).delete()
    ExcludedDomain.objects.bulk_create(
        ExcludedDomain(sharing=sharing, domain=d) for d in excluded_domains
    )


def sharing_update(
    *,
    mailbox: Mailbox,
    actor: User,
    permission: str,
    excluded_domains: list[str],
    consolidate: bool,
) -> MailboxSharing:
    """Save a mailbox's sharing settings. Takes effect on the next page load, old mail included."""
    if permission not in Permission.values:
        raise ValueError(f"unknown permission {permission!r}")
    with transaction.atomic():
        sharing = MailboxSharing.objects.select_for_update().get(mailbox=mailbox)
        if (
            sharing.locked
            and permission == Permission.PRIVATE
            and sharing.permission != Permission.PRIVATE
        ):
            audit_add(
                mailbox=mailbox,
                actor=actor,
                action=AuditAction.TAMPERED,
                old=sharing.permission,
                new=permission,
            )
            raise SharingLocked()
        old_domains = sorted(sharing.excluded_domains.values_list("domain", flat=True))
        old_permission, old_consolidate = sharing.permission, sharing.consolidate_client_mail
        _apply(
            sharing,
            permission=permission,
            excluded_domains=excluded_domains,
            consolidate=consolidate,
        )
        if old_permission != permission:
            audit_add(
                mailbox=mailbox,
                actor=actor,
                action=AuditAction.PERMISSION_CHANGED,
                old=old_permission,
                new=permission,
            )
        if old_domains != sorted(excluded_domains):
            audit_add(
                mailbox=mailbox,
                actor=actor,
                action=AuditAction.DOMAINS_CHANGED,
                old=", ".join(old_domains),
                new=", ".join(sorted(excluded_domains)),
            )
        if old_consolidate != consolidate:
            audit_add(
                mailbox=mailbox,
                actor=actor,
                action=AuditAction.CONSOLIDATION_CHANGED,
                old=str(old_consolidate),
                new=str(consolidate),
            )
    logger.info("sharing of mailbox %s set to %s by user %s", mailbox.pk, permission, actor.pk)
    return sharing


def member_mail_lock(*, membership: Membership, actor: User, locked: bool) -> int:
    """Lock or unlock every mailbox of a member: a locked owner cannot switch to Private."""
    with transaction.atomic():
        rows = MailboxSharing.objects.filter(mailbox__owner=membership.user)
        changed = rows.exclude(locked=locked).update(locked=locked)
        audit_add(
            mailbox=None,
            actor=actor,
            subject_user=membership.user,
            organization_id=membership.organization_id,
            action=AuditAction.LOCKED if locked else AuditAction.UNLOCKED,
        )
    return changed


def mail_hand_over(*, from_user: User, to_user: User, actor: User) -> int:
    """Give ``to_user`` ownership of ``from_user``'s record mail (mail linked to a record).

    Mail linked to no record stays with its owner: it was never anyone else's business.
    """
    organization_id = actor.membership.organization_id
    if {from_user.membership.organization_id, to_user.membership.organization_id} != {
        organization_id
    }:
        raise ValueError("both users must be members of the actor's organisation")
    with transaction.atomic():
        moved = (
            Message.objects.filter(organization_id=organization_id, owner=from_user)
            .filter(Exists(MessageLink.objects.filter(message_id=OuterRef("pk"))))
            .update(owner=to_user)
        )
        audit_add(
            mailbox=None,
            actor=actor,
            subject_user=from_user,
            organization_id=organization_id,
            action=AuditAction.HANDED_OVER,
            old=str(from_user),
            new=f"{to_user} ({moved})",
        )
    return moved


@dataclass(frozen=True)
class SharingPreview:
    sentences: list[str]


def _colleagues(mailbox: Mailbox) -> tuple[User | None, int, User | None, int]:
    """A representative recruiter and admin colleague of the owner, with how many there are."""
    others = (
        Membership.objects.filter(organization_id=mailbox.organization_id, user__is_active=True)
        .exclude(user_id=mailbox.owner_id)
        .select_related("user")
    )
    recruiters = [m.user for m in others if m.role == Role.RECRUITER]
    admins = [m.user for m in others if m.role == Role.ADMIN]
    return (
        recruiters[0] if recruiters else None,
        len(recruiters),
        admins[0] if admins else None,
        len(admins),
    )


def _visible_ids(mailbox: Mailbox, viewer: User | None) -> set[int]:
    if viewer is None:
        return set()
    return set(
        Message.objects.filter(mailbox=mailbox)
        .exclude(owner=viewer)
        .visible_to(viewer)
        .values_list("pk", flat=True)
    )


def _record_count(message_ids: set[int]) -> int:
    ids = sorted(message_ids)
    records: set[int] = set()
    for start in range(0, len(ids), 5000):
        records.update(
            MessageLink.objects.filter(message_id__in=ids[start : start + 5000]).values_list(
                "record_id", flat=True
            )
        )
    return len(records)


def sharing_preview(
    *, mailbox: Mailbox, permission: str, excluded_domains: list[str], consolidate: bool
) -> SharingPreview:
    """What saving these settings would change for colleagues, computed with the real rule on the
    changed settings inside a transaction that is then rolled back (so the rule stays in one place)."""
    recruiter, recruiter_count, admin, admin_count = _colleagues(mailbox)
    before = (_visible_ids(mailbox, recruiter), _visible_ids(mailbox, admin))
    with transaction.atomic():
        savepoint = transaction.savepoint()
        _apply(
            sharing_for(mailbox),
            permission=permission,
            excluded_domains=excluded_domains,
            consolidate=consolidate,
        )
        after = (_visible_ids(mailbox, recruiter), _visible_ids(mailbox, admin))
        transaction.savepoint_rollback(savepoint)
    sentences: list[str] = []
    for (old, new), count, label_more, label_less in (
        ((before[0], after[0]), recruiter_count, _("recruiters"), _("recruiters")),
        ((before[1], after[1]), admin_count, _("admins"), _("admins")),
    ):
        if not count:
            continue
        shown, hidden = new - old, old - new
        if shown:
            sentences.append(
                ngettext(
                    "%(emails)s email on %(records)s records becomes visible to %(people)s %(who)s.",
                    "%(emails)s emails on %(records)s records become visible to %(people)s %(who)s.",
                    len(shown),
                )
                % {
                    "emails": f"{len(shown):,}",
                    "records": f"{_record_count(shown):,}",
                    "people": count,
                    "who": label_more,
                }
            )
        if hidden:
            sentences.append(
                ngettext(
                    "%(emails)s email on %(records)s records is hidden again from %(people)s %(who)s.",
                    "%(emails)s emails on %(records)s records are hidden again from %(people)s %(who)s.",
                    len(hidden),
                )
                % {
                    "emails": f"{len(hidden):,}",
                    "records": f"{_record_count(hidden):,}",
                    "people": count,
                    "who": label_less,
                }
            )
    if not sentences:
        sentences.append(_("Nothing changes for your colleagues."))
    return SharingPreview(sentences=sentences)
