"""The one visibility rule: who may see which message. Every view, count, search, thread,
download and JSON endpoint that shows mail starts from ``visible_messages`` (through
``Message.objects.visible_to(user)``), or, for lists of one's own mail, from ``own_messages``
(``Message.objects.owned_by(user)``), the rule's first row alone; nothing else decides.

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
a changed permission or excluded domain applies on the next query, old mail included. Its SQL is
compiled once per database vendor and reused (``_Clause``): applying it costs a page almost no
Python.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db.models import (
    BooleanField,
    CharField,
    Exists,
    Expression,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Value,
)
from django.db.models.functions import Concat
from django.db.models.lookups import Exact, In
from django.db.models.sql import Query

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

# The columns of the message row that the rule's clauses read, by the name the clauses use
# (``_message``) and the path from the message that gives them in the query they filter.
MESSAGE_COLUMNS = {
    "pk": "pk",
    "origin": "origin",
    "mailbox_id": "mailbox_id",
    "mailbox_address": "mailbox__email_address",
    "sharing_id": "mailbox__sharing__id",
    "permission": "mailbox__sharing__permission",
}


class _MessageColumn(Expression):
    """A column of the message a clause is about, written inside the clause (in its subqueries
    too) where the ORM would use ``OuterRef``. The clause is compiled once without knowing the
    query it will filter, so this compiles to a placeholder, which ``_Clause`` replaces by the
    column as that query names it."""

    def __init__(self, name: str) -> None:
        super().__init__(output_field=CharField())
        self.name = name

    def resolve_expression(self, *args: Any, **kwargs: Any) -> _MessageColumn:
        return self  # nothing to resolve: the placeholder stands for the filtered query's column

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        return _placeholder(self.name), []


def _placeholder(name: str) -> str:
    return f"<message.{name}>"


def _message(name: str) -> _MessageColumn:
    return _MessageColumn(name)


def _shared_through_a_link(*, is_admin: bool) -> Exists:
    """M has a link through which a non-owner (an admin or not) sees it: any link for mail
    sent from the hub; for POP3 mail, any link when the permission is Public (or Admin, for an
    admin), a link to a record whose "share emails" is ticked when it is Custom. (Public's
    excluded domains are applied by ``visible_messages``.)"""
    any_link = [Permission.PUBLIC, Permission.ADMIN] if is_admin else [Permission.PUBLIC]
    links = MessageLink.objects.filter(message_id=_message("pk")).alias(
        message_origin=_message("origin"), mailbox_permission=_message("permission")
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
        ExcludedDomain.objects.filter(sharing_id=_message("sharing_id"))
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
            message_id=_message("pk"), role__in=[AddressRole.FROM, AddressRole.TO, AddressRole.CC]
        )
        .exclude(address=_message("mailbox_address"))
        .filter(Exists(excluded_here))
    )


def _not_excluded() -> Q:
    # Excluded domains narrow only POP3 mail of a Public mailbox; the other ways a link shares
    # mail (hub mail, Admin, Custom) ignore them.
    return (
        Q(Exact(_message("origin"), MessageOrigin.HUB))
        | Q(In(_message("permission"), [Permission.ADMIN, Permission.CUSTOM]))
        | Q(~_has_excluded_correspondent())
    )


def _shared_with(*, is_admin: bool) -> Q:
    """M is visible to a member who does not own it (an admin or not)."""
    return _shared_through_a_link(is_admin=is_admin) & _not_excluded()


# The clauses, by name: what ``_Clause`` compiles. None depends on the viewer beyond whether
# they are an admin, so each is built, resolved and compiled once per database vendor.
_CLAUSES: dict[str, Callable[[], Q]] = {
    "shared with a member": lambda: _shared_with(is_admin=False),
    "shared with an admin": lambda: _shared_with(is_admin=True),
    "excluded correspondent": lambda: Q(_has_excluded_correspondent()),
}
_COMPILED: dict[tuple[str, str, str], tuple[str, tuple[Any, ...]]] = {}
_SUBQUERY_PREFIXES: dict[str, frozenset[str]] = {}


def _clause_query(clause: str, *, alias_prefix: str) -> tuple[Query, Any]:
    """The clause resolved against a bare message query whose aliases start like those of the
    query it will filter (so its subqueries take other aliases), and that query."""
    from mailboxes.models import Message

    query = Query(Message)
    query.alias_prefix = alias_prefix
    query.subq_aliases = frozenset([alias_prefix])
    return query, query.build_where(_CLAUSES[clause]())


def _subquery_prefixes(clause: str) -> frozenset[str]:
    """The alias prefixes the clause's subqueries take inside a query of its own."""
    prefixes = _SUBQUERY_PREFIXES.get(clause)
    if prefixes is None:
        query, _where = _clause_query(clause, alias_prefix=Query.alias_prefix)
        prefixes = _SUBQUERY_PREFIXES[clause] = query.subq_aliases - {Query.alias_prefix}
    return prefixes


class _Clause(Expression):
    """One of the rule's clauses (``_CLAUSES``) about the message row of the query it filters
    or annotates, as one boolean SQL expression.

    Why not the ORM's own Q and Exists each time: building, resolving and compiling the
    clause's three correlated subqueries cost a few milliseconds of Python on every page, more
    than the database spends on them. The clause is the same ORM expression, compiled once per
    (clause, database vendor, alias prefix of the filtered query) into SQL with placeholders;
    each use only fills in the filtered query's own columns (``MESSAGE_COLUMNS``, through the
    joins to the mailbox and its sharing settings that resolving them adds, LEFT OUTER: mail
    without a mailbox has neither). Its parameters are constants; the viewer's ids are
    ordinary filters beside it."""

    conditional = True

    def __init__(self, clause: str, columns: list[Any] | None = None) -> None:
        super().__init__(output_field=BooleanField())
        self.clause = clause
        self.columns = (
            columns if columns is not None else [F(path) for path in MESSAGE_COLUMNS.values()]
        )

    def get_source_expressions(self) -> list[Any]:
        return self.columns

    def set_source_expressions(self, expressions: Sequence[Any]) -> None:
        self.columns = list(expressions)

    def resolve_expression(self, query: Any = None, *args: Any, **kwargs: Any) -> _Clause:
        resolved = super().resolve_expression(query, *args, **kwargs)
        prefixes = _subquery_prefixes(self.clause)
        if query is not None and not prefixes <= query.subq_aliases:
            # Reserved, as resolving a subquery would: if this query later becomes a subquery
            # itself, its new aliases must not be the ones the clause's subqueries use.
            query.subq_aliases = query.subq_aliases | prefixes
        return resolved

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        prefix = compiler.query.alias_prefix
        key = (self.clause, connection.vendor, prefix)
        compiled = _COMPILED.get(key)
        if compiled is None:
            if prefix in _subquery_prefixes(self.clause):
                # Cannot happen through resolve_expression's reservation; were it to, the
                # clause's subqueries would shadow the columns they correlate on.
                raise ValueError(f"alias prefix {prefix!r} is the visibility rule's own")
            query, where = _clause_query(self.clause, alias_prefix=prefix)
            sql, params = where.as_sql(query.get_compiler(connection=connection), connection)
            compiled = _COMPILED[key] = (f"({sql})", tuple(params))
        sql, params = compiled
        for name, column in zip(MESSAGE_COLUMNS, self.columns, strict=True):
            sql = sql.replace(_placeholder(name), compiler.compile(column)[0])
        return sql, list(params)


def _membership(user: Any) -> Any:
    """The user's membership, or None when the rule lets them see nothing (signed out, no
    membership, inactive)."""
    membership = (
        getattr(user, "membership", None) if getattr(user, "is_authenticated", False) else None
    )
    return membership if membership is not None and user.is_active else None


def visible_messages(queryset: QuerySet[Message], user: Any) -> QuerySet[Message]:
    """``queryset`` narrowed to the messages ``user`` may see (see the module's table)."""
    membership = _membership(user)
    if membership is None:
        return queryset.none()
    shared = "shared with an admin" if membership.is_admin else "shared with a member"
    return queryset.filter(
        Q(organization_id=membership.organization_id) & (Q(owner_id=user.pk) | _Clause(shared))
    )


def own_messages(queryset: QuerySet[Message], user: Any) -> QuerySet[Message]:
    """``queryset`` narrowed to the messages ``user`` owns: the rule's first row alone, the
    same rows as ``visible_messages(queryset, user).filter(owner_id=user.pk)``.

    For the lists of one's own mail (Inbox, Sent, the client folder). The whole rule gives
    the same rows there, but PostgreSQL prices its OR branches for every row although the owner
    branch always holds first: it then judged reading the owner's index newest first dearer
    than collecting all of a big mailbox's rows and sorting them, and a Sent count took 40 ms
    instead of 1.5 (bench/pages.py).
    """
    membership = _membership(user)
    if membership is None:
        return queryset.none()
    return queryset.filter(organization_id=membership.organization_id, owner_id=user.pk)


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

    row = (
        MessageModel.objects.filter(pk=message.pk)
        .annotate(
            audience_permission=F("mailbox__sharing__permission"),
            audience_linked=Exists(MessageLink.objects.filter(message_id=OuterRef("pk"))),
            audience_shared_record=Exists(
                MessageLink.objects.filter(message_id=OuterRef("pk"), record__share_emails=True)
            ),
            audience_excluded=_Clause("excluded correspondent"),
            audience_recruiters=_Clause("shared with a member"),
            audience_admins=_Clause("shared with an admin"),
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
