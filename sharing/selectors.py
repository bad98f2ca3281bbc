"""Reads for sharing pages: the "who can see this" panel of a message, the admin's table of
members' mail settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Count, Prefetch, Q
from django.utils.translation import gettext as _

from mailboxes.models import Mailbox, Message, MessageOrigin
from records.models import Membership, Organization, Role
from recruitmail.urlpk import url_with_pk
from sharing.models import Permission
from sharing.visibility import message_audience


@dataclass
class AudiencePanel:
    who: list[str] = field(default_factory=list)  # who sees it
    why: list[str] = field(default_factory=list)  # the reasons, in the rule's words


def audience_panel(*, message: Message, viewer: Any) -> AudiencePanel:
    """Who else can see ``message`` and why, from the visibility rule itself (two queries)."""
    audience = message_audience(message)
    counts = (
        Membership.objects.filter(organization_id=message.organization_id, user__is_active=True)
        .exclude(user_id=message.owner_id)
        .aggregate(
            admins=Count("pk", filter=Q(role=Role.ADMIN)),
            recruiters=Count("pk", filter=Q(role=Role.RECRUITER)),
        )
    )
    owner = _("you") if message.owner_id == viewer.pk else str(message.owner)
    panel = AudiencePanel(who=[_("%(owner)s, who owns it") % {"owner": owner}])
    if audience.recruiters:
        panel.who.append(
            _("everyone in the organisation (%(count)d more people)")
            % {"count": counts["admins"] + counts["recruiters"]}
        )
    elif audience.admins and counts["admins"]:
        panel.who.append(_("the organisation's admins (%(count)d)") % {"count": counts["admins"]})
    if message.origin == MessageOrigin.HUB:
        panel.why.append(
            _("Sent from RecruitMail: it follows the visibility of the records it concerns.")
            if audience.linked
            else _("Sent from RecruitMail, but it concerns no record.")
        )
    elif not audience.linked:
        panel.why.append(_("It concerns no record, so it stays its owner's alone."))
    elif audience.permission == Permission.PRIVATE:
        panel.why.append(_("The mailbox is Private: only its owner sees its mail."))
    elif audience.permission == Permission.ADMIN:
        panel.why.append(_("The mailbox shares its mail about records with admins."))
    elif audience.permission == Permission.PUBLIC:
        panel.why.append(
            _("A correspondent is in one of the mailbox's excluded domains, so it is not shared.")
            if audience.excluded
            else _("The mailbox shares all its mail about records with everyone.")
        )
    elif audience.permission == Permission.CUSTOM:
        panel.why.append(
            _("It concerns a record whose “share emails” box is ticked.")
            if audience.shared_record
            else _("None of its records has “share emails” ticked, so it is not shared.")
        )
    return panel


class MemberMailbox(TypedDict):
    name: str
    is_active: bool
    permission: str  # the permission's label in the active language
    locked: bool


class MemberRow(TypedDict):
    """One member on the admin's mail settings page (``sharing/admin_mail_settings.html``)."""

    pk: str
    name: str
    email: str
    is_active: bool
    lock_url: str
    mailboxes: list[MemberMailbox]


def member_mail_rows(organization: Organization) -> list[MemberRow]:
    """Every member of ``organization`` with their mailboxes and each one's sharing, by name
    (two queries). Plain values, worked out once: a page of a hundred members rendered from
    model instances spent most of its time in the template's lookups, one ``reverse()`` per
    row and the localisation of every primary key (bench/pages.py)."""
    # A mailbox's sharing in the same query, and only the columns the page shows (a mailbox
    # has dozens of account columns, credentials among them).
    mailboxes = (
        Mailbox.objects.select_related("sharing")
        .only("id", "owner_id", "name", "is_active", "sharing__permission", "sharing__locked")
        .order_by("pk")
    )
    members = (
        Membership.objects.filter(organization=organization)
        .select_related("user")
        .prefetch_related(Prefetch("user__mailboxes", queryset=mailboxes))
        .order_by("user__full_name", "pk")
    )
    lock_url = url_with_pk("sharing:lock")
    return [
        {
            "pk": str(member.pk),
            "name": str(member.user),
            "email": member.user.email,
            "is_active": member.user.is_active,
            "lock_url": lock_url(member.pk),
            "mailboxes": [_member_mailbox(mailbox) for mailbox in member.user.mailboxes.all()],
        }
        for member in members
    ]


def _member_mailbox(mailbox: Mailbox) -> MemberMailbox:
    try:
        sharing = mailbox.sharing
    except ObjectDoesNotExist:  # not yet saved with its sharing row: Private, unlocked
        return {
            "name": mailbox.name,
            "is_active": mailbox.is_active,
            "permission": str(Permission.PRIVATE.label),
            "locked": False,
        }
    return {
        "name": mailbox.name,
        "is_active": mailbox.is_active,
        "permission": sharing.permission_label,
        "locked": sharing.locked,
    }
