"""The one visibility rule: who may see which message. Every view, count, search, thread,
download and JSON endpoint that shows mail starts from ``visible_messages`` (through
``Message.objects.visible_to(user)``); nothing else decides.

A user U may see a message M when U and M are in the same organisation and any row holds:

======================================  ==========================================================
M is …                                  U sees it when …
======================================  ==========================================================
any message                             U owns M (U's mailbox fetched or sent it, or it was handed
                                        over to U)
sent from the hub (compose, reply,      M is linked to a record U can see (for now every member
record-page send, notification)         sees every record of the organisation)
fetched over POP3 and linked to at      the mailbox owner's permission allows it:
least one record                          Private: nobody else
                                          Admin:   U is an admin
                                          Public:  anyone, unless an outside correspondent of M
                                                   (From, To, Cc other than the mailbox's own
                                                   address) is in one of the mailbox's excluded
                                                   domains or a subdomain of one
                                          Custom:  anyone, when M is linked to a record whose
                                                   "share emails" is ticked
linked to no record                     never (only its owner, first row)
======================================  ==========================================================

Deny by default: no membership, an inactive user, another organisation: nothing. The rule is
one SQL filter (EXISTS subqueries), so a page costs the same number of queries at any size, and
a changed permission or excluded domain applies on the next query, old mail included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import CharField, Exists, ExpressionWrapper, F, OuterRef, Q, QuerySet, Value
from django.db.models.functions import Concat

from mailboxes.models import AddressRole, MessageAddress, MessageLink, MessageOrigin
from sharing.models import ExcludedDomain, Permission

if TYPE_CHECKING:
    from mailboxes.models import Message

NOTHING = Q(pk__in=[])


def _linked() -> Exists:
    return Exists(MessageLink.objects.filter(message_id=OuterRef("pk")))


def _linked_to_shared_record() -> Exists:
    return Exists(MessageLink.objects.filter(message_id=OuterRef("pk"), record__share_emails=True))


def _has_excluded_correspondent() -> Exists:
    """M has a correspondent (From/To/Cc, not the mailbox's own address) in an excluded domain
    of M's mailbox, or in a subdomain of one."""
    excluded_here = (
        ExcludedDomain.objects.filter(sharing__mailbox_id=OuterRef(OuterRef("mailbox_id")))
        .annotate(
            correspondent_domain=ExpressionWrapper(OuterRef("domain"), output_field=CharField())
        )
        .filter(
            Q(domain=F("correspondent_domain"))
            | Q(correspondent_domain__endswith=Concat(Value("."), F("domain")))
        )
    )
    return Exists(
        MessageAddress.objects.filter(
            message_id=OuterRef("pk"), role__in=[AddressRole.FROM, AddressRole.TO, AddressRole.CC]
        )
        .exclude(address=OuterRef("mailbox__email_address"))
        .filter(Exists(excluded_here))
    )


def shared_by_permission(*, is_admin: bool) -> Q:
    """POP3 mail that the mailbox owner's permission shares with a non-owner (admin or not)."""
    permission = "mailbox__sharing__permission"
    admin_clause = Q(**{permission: Permission.ADMIN}) if is_admin else NOTHING
    public_clause = Q(**{permission: Permission.PUBLIC}) & ~_has_excluded_correspondent()
    custom_clause = Q(**{permission: Permission.CUSTOM}) & _linked_to_shared_record()
    return Q(origin=MessageOrigin.POP3) & _linked() & (admin_clause | public_clause | custom_clause)


def visible_messages(queryset: QuerySet[Message], user: Any) -> QuerySet[Message]:
    """``queryset`` narrowed to the messages ``user`` may see (see the module's table)."""
    membership = (
        getattr(user, "membership", None) if getattr(user, "is_authenticated", False) else None
    )
    if membership is None or not user.is_active:
        return queryset.none()
    sent_from_hub = Q(origin=MessageOrigin.HUB) & _linked()
    return queryset.filter(organization_id=membership.organization_id).filter(
        Q(owner_id=user.pk) | sent_from_hub | shared_by_permission(is_admin=membership.is_admin)
    )
