"""Reads for sharing pages: the "who can see this" panel of a message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Q
from django.utils.translation import gettext as _

from mailboxes.models import Message, MessageOrigin
from records.models import Membership, Role
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
