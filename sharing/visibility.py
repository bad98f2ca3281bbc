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

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db.models import (
    BooleanField,
    CharField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Value,
)
from django.db.models.functions import Concat

from mailboxes.models import AddressRole, MessageAddress, MessageLink, MessageOrigin
from sharing.models import ExcludedDomain, Permission

if TYPE_CHECKING:
    from mailboxes.models import Message

# SQL shape. Everything that needs a link is one EXISTS over the message's links, and it reads
# the message's own columns (origin, the mailbox's permission) inside. That is deliberate: an
# EXISTS under OR that only correlates on ``message_id`` is turned by PostgreSQL into a "hashed
# SubPlan", which reads the organisation's whole link table on every page load (hundreds of
# milliseconds at a million messages); this one is probed through the (message, record) index
# for the rows the page actually looks at. tests/sharing/test_visibility_matrix.py holds the
# rule still, bench/visibility.py the speed.
PERMISSION = "visibility_permission"  # the message's mailbox's permission, as a query alias


def _outer(name: str) -> ExpressionWrapper:
    return ExpressionWrapper(OuterRef(name), output_field=CharField())


def _shared_through_a_link(*, is_admin: bool) -> Exists:
    """M has a link through which a non-owner (an admin or not) sees it: any link for mail
    sent from the hub; for POP3 mail, any link when the permission is Public (or Admin, for an
    admin), a link to a record whose "share emails" is ticked when it is Custom. (Public's
    excluded domains are applied by ``visible_messages``.)"""
    any_link = [Permission.PUBLIC, Permission.ADMIN] if is_admin else [Permission.PUBLIC]
    links = MessageLink.objects.filter(message_id=OuterRef("pk")).alias(
        message_origin=_outer("origin"), mailbox_permission=_outer(PERMISSION)
    )
    return Exists(
        links.filter(
            Q(message_origin=MessageOrigin.HUB)
            | Q(message_origin=MessageOrigin.POP3)
            & (
                Q(mailbox_permission__in=any_link)
                | Q(mailbox_permission=Permission.CUSTOM, record__share_emails=True)
            )
        )
    )


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


def _not_excluded() -> Q:
    # Excluded domains narrow only POP3 mail of a Public mailbox; the other ways a link shares
    # mail (hub mail, Admin, Custom) ignore them.
    return (
        Q(origin=MessageOrigin.HUB)
        | Q(**{f"{PERMISSION}__in": [Permission.ADMIN, Permission.CUSTOM]})
        | ~_has_excluded_correspondent()
    )


def _shared_with(*, is_admin: bool) -> Q:
    """M is visible to a member who does not own it (an admin or not)."""
    return _shared_through_a_link(is_admin=is_admin) & _not_excluded()


def visible_messages(queryset: QuerySet[Message], user: Any) -> QuerySet[Message]:
    """``queryset`` narrowed to the messages ``user`` may see (see the module's table)."""
    membership = (
        getattr(user, "membership", None) if getattr(user, "is_authenticated", False) else None
    )
    if membership is None or not user.is_active:
        return queryset.none()
    return (
        queryset.filter(organization_id=membership.organization_id)
        .alias(**{PERMISSION: F("mailbox__sharing__permission")})
        .filter(Q(owner_id=user.pk) | _shared_with(is_admin=membership.is_admin))
    )


@dataclass(frozen=True)
class Audience:
    """Who besides its owner sees one message, and why: the same clauses as visible_messages."""

    permission: str  # the mailbox's permission ("" for mail without a mailbox)
    origin: str
    linked: bool  # linked to at least one record
    shared_record: bool  # linked to a record whose "share emails" is ticked
    excluded: bool  # a correspondent is in one of the mailbox's excluded domains
    recruiters: bool  # every member who is not an admin sees it
    admins: bool  # every admin sees it


def message_audience(message: Message) -> Audience:
    """The audience of ``message`` in one query, from the rule's own clauses."""
    from mailboxes.models import Message as MessageModel

    boolean = BooleanField()
    row = (
        MessageModel.objects.filter(pk=message.pk)
        .alias(**{PERMISSION: F("mailbox__sharing__permission")})
        .annotate(
            audience_permission=F(PERMISSION),
            audience_linked=Exists(MessageLink.objects.filter(message_id=OuterRef("pk"))),
            audience_shared_record=Exists(
                MessageLink.objects.filter(message_id=OuterRef("pk"), record__share_emails=True)
            ),
            audience_excluded=_has_excluded_correspondent(),
            audience_recruiters=ExpressionWrapper(
                _shared_with(is_admin=False), output_field=boolean
            ),
            audience_admins=ExpressionWrapper(_shared_with(is_admin=True), output_field=boolean),
        )
        .values(
            "origin",
            "audience_permission",
            "audience_linked",
            "audience_shared_record",
            "audience_excluded",
            "audience_recruiters",
            "audience_admins",
        )
        .get()
    )
    return Audience(
        permission=row["audience_permission"] or "",
        origin=row["origin"],
        linked=bool(row["audience_linked"]),
        shared_record=bool(row["audience_shared_record"]),
        excluded=bool(row["audience_excluded"]),
        recruiters=bool(row["audience_recruiters"]),
        admins=bool(row["audience_admins"]),
    )
