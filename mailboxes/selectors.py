"""Reads for the mail reading pages: folders, one message and its parts, a record's mail.

Every function here starts from ``Message.objects.visible_to(user)`` (the one rule, in
``sharing.visibility``) and narrows it in SQL; nothing is filtered in Python. Lists also drop
mail deleted in the hub (``deleted_at`` set), which the deletion policy "when deleted here"
then removes from the server. A list page costs a constant number of queries: the count, the
page, and one prefetch of the records its rows link to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.core.paginator import Page, Paginator
from django.db.models import (
    Count,
    Exists,
    F,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    Window,
)
from django.db.models.functions import Coalesce, Length, NullIf, RowNumber, Substr
from django.utils.functional import cached_property
from django.utils.translation import gettext_lazy as _

from mailboxes.models import (
    AddressRole,
    Attachment,
    Direction,
    Mailbox,
    Message,
    MessageAddress,
    MessageLink,
)
from mailboxes.search import messages_matching
from records.models import Record, RecordKind
from recruitmail.pagination import COUNT_CAP, capped_page, wanted_page
from sharing.models import Permission

PAGE_SIZE = 25
# What the message page shows before "show all": enough for any real message, and bounded so
# that a 50 MB body or a mailing to thousands of people renders at once.
BODY_DISPLAY_LIMIT = 200_000  # characters
RECIPIENT_DISPLAY_LIMIT = 50
THREAD_DISPLAY_LIMIT = 200
# Never loaded for list rows: they can be megabytes per message.
HEAVY_FIELDS = ("body_text", "body_html", "defects", "references", "in_reply_to")


class Folder:
    INBOX = "inbox"
    SENT = "sent"
    SHARED = "shared"
    CLIENTS = "clients"

    TITLES = {
        INBOX: _("Inbox"),
        SENT: _("Sent"),
        SHARED: _("Shared with me"),
        CLIENTS: _("Client mail"),
    }


# --- The active mailbox -------------------------------------------------------------------


def active_mailbox(user: Any) -> Mailbox | None:
    """The user's active mailbox (with its sharing settings), or None."""
    return Mailbox.objects.owned_by(user).filter(is_active=True).select_related("sharing").first()


def user_mailboxes(user: Any) -> list[Mailbox]:
    """The user's mailboxes for the header switcher (one query), active first."""
    return list(
        Mailbox.objects.owned_by(user)
        .select_related("sharing")
        .only(
            "pk",
            "name",
            "email_address",
            "is_active",
            "sharing__permission",
            "sharing__consolidate_client_mail",
        )
        .order_by("-is_active", "name", "pk")
    )


@dataclass
class MailNavigation:
    """The header's mailbox switcher and folder links (``templates/base.html``)."""

    mailboxes: list[Mailbox]  # active first
    active: Mailbox | None
    client_folder: bool  # the client folder is on for the active mailbox


def mail_navigation(user: Any) -> MailNavigation:
    """The user's mailboxes, the active one among them, and whether its client folder is on,
    in one query. A page that needs the active mailbox takes ``active`` from here (only the
    switcher's columns and the sharing settings are loaded) and gives the whole to its
    template as ``mailnav``, so the header does not read the mailboxes a second time."""
    mailboxes = user_mailboxes(user)
    active = next((mailbox for mailbox in mailboxes if mailbox.is_active), None)
    return MailNavigation(mailboxes, active, consolidates_client_mail(active))


def sharing_permission(mailbox: Mailbox | None) -> str | None:
    """The mailbox's sharing permission; None without a mailbox or its sharing row."""
    try:
        return mailbox.sharing.permission if mailbox is not None else None
    except ObjectDoesNotExist:
        return None


def consolidates_client_mail(mailbox: Mailbox | None) -> bool:
    try:
        return bool(mailbox is not None and mailbox.sharing.consolidate_client_mail)
    except ObjectDoesNotExist:
        return False


# --- Lists --------------------------------------------------------------------------------


def listable_messages(user: Any) -> QuerySet[Message]:
    """What any list, thread or page may show: visible to ``user`` and not deleted in the hub."""
    return Message.objects.visible_to(user).filter(deleted_at__isnull=True)


def own_listable_messages(user: Any) -> QuerySet[Message]:
    """``listable_messages`` that ``user`` owns (the same rows, read without the rest of the
    rule: see ``sharing.visibility.own_messages``)."""
    return Message.objects.owned_by(user).filter(deleted_at__isnull=True)


def _linked_to_clients() -> Exists:
    """The message is linked to a client, or to a contact who works at a client."""
    return Exists(
        MessageLink.objects.filter(message_id=OuterRef("pk")).filter(
            Q(record__kind=RecordKind.CLIENT) | Q(record__contact__company__isnull=False)
        )
    )


def folder_messages(*, user: Any, folder: str, mailbox: Mailbox | None) -> QuerySet[Message]:
    """The messages of one folder, unordered and without row data (see ``message_rows``).

    Inbox and Sent are the user's own mail of the active mailbox (Sent also holds mail the hub
    sent without a mailbox, such as notifications); without an active mailbox, all of the
    user's own. "Shared with me" is everything visible that the user does not own. The client
    folder is the user's own mail linked to a client or to a client's contact.
    """
    mine = own_listable_messages(user)
    if folder == Folder.INBOX:
        messages = mine.filter(direction=Direction.INCOMING)
        return messages.filter(mailbox=mailbox) if mailbox is not None else messages
    if folder == Folder.SENT:
        messages = mine.filter(direction=Direction.OUTGOING)
        if mailbox is not None:
            messages = messages.filter(Q(mailbox=mailbox) | Q(mailbox__isnull=True))
        return messages
    if folder == Folder.SHARED:
        return listable_messages(user).exclude(owner_id=user.pk)
    if folder == Folder.CLIENTS:
        return mine.filter(_linked_to_clients())
    raise ValueError(f"unknown folder {folder!r}")


def record_messages(*, user: Any, record: Record) -> QuerySet[Message]:
    """The visible mail linked to ``record``."""
    return listable_messages(user).filter(
        Exists(MessageLink.objects.filter(message_id=OuterRef("pk"), record_id=record.pk))
    )


def search_messages(*, user: Any, text: str) -> QuerySet[Message]:
    """All the mail ``user`` may see that matches ``text`` (see ``mailboxes.search``)."""
    return messages_matching(listable_messages(user), text)


def _first_recipient() -> Subquery:
    """The name (or else the address) of a message's first To, for rows of sent mail."""
    first_to = MessageAddress.objects.filter(
        message_id=OuterRef("pk"), role=AddressRole.TO
    ).order_by("pk")
    return Subquery(first_to.values(shown=Coalesce(NullIf("name", Value("")), "address"))[:1])


def message_rows(messages: QuerySet[Message], *, user: Any) -> QuerySet[Message]:
    """``messages`` with what a list row shows (sender, owner, record chips), in the order
    they were given (a search's), else newest first."""
    # A chip shows a record's kind and name (and links to it): not its notes or other columns.
    chips = (
        Record.objects.visible_to(user)
        .only("pk", "kind", "display_name")
        .order_by("kind", "display_name", "pk")
    )
    return (
        messages.select_related("owner")
        .annotate(first_recipient=_first_recipient())
        .defer(*HEAVY_FIELDS)
        .prefetch_related(Prefetch("records", queryset=chips, to_attr="visible_records"))
        .order_by(*(messages.query.order_by or ("-sort_at", "-pk")))
    )


class PeekPaginator(Paginator):
    """Pages without counting: a page fetches one row more than it shows, which says whether
    another page follows. For search, where each counted match would cost as much as the page
    (the matches found again, sorted, and checked against the visibility rule)."""

    def __init__(self, object_list: Any, per_page: int, *, number: int) -> None:
        super().__init__(object_list, per_page)
        self.wanted = number

    @cached_property
    def rows(self) -> list[Any]:
        start = (self.wanted - 1) * self.per_page
        return list(self.object_list[start : start + self.per_page + 1])

    @cached_property
    def count(self) -> int:
        return (self.wanted - 1) * self.per_page + len(self.rows)

    @property
    def capped(self) -> bool:
        """True when more rows follow this page (show "more than", not a total)."""
        return len(self.rows) > self.per_page

    @property
    def count_floor(self) -> int:
        return self.wanted * self.per_page

    def page(self, number: Any) -> Page:
        return self._get_page(self.rows[: self.per_page], self.wanted, self)


def peek_page_of(messages: QuerySet[Message], *, user: Any, number: Any) -> Page:
    """One page of ``messages`` as list rows, not counted (see ``PeekPaginator``)."""
    wanted = wanted_page(number)
    return PeekPaginator(message_rows(messages, user=user), PAGE_SIZE, number=wanted).page(wanted)


def page_of(
    messages: QuerySet[Message], *, user: Any, number: Any, count_cap: int = COUNT_CAP
) -> Page:
    """One page of ``messages`` as list rows; a missing or malformed number gives a valid page.
    Rows are counted up to ``count_cap`` or just past the page, whichever is further."""
    return capped_page(
        message_rows(messages, user=user), per_page=PAGE_SIZE, number=number, count_cap=count_cap
    )


def record_mail_context(
    *, user: Any, record: Record, number: Any, mailbox: Mailbox | None
) -> dict[str, Any]:
    """What a record page shows of its mail: a page of it, and whether the user may tick
    "share emails" (only when ``mailbox``, the user's active one, uses the Custom permission,
    the one that reads the flag)."""
    return {
        "mail_page": page_of(record_messages(user=user, record=record), user=user, number=number),
        "can_share_emails": sharing_permission(mailbox) == Permission.CUSTOM,
    }


# --- One message --------------------------------------------------------------------------


def readable_messages(user: Any) -> QuerySet[Message]:
    """Messages for the message page: the bodies cut in SQL, so a huge one is never loaded.

    ``text_head`` holds the first BODY_DISPLAY_LIMIT + 1 characters of the text body (one more
    than shown, to tell that it was cut), ``html_length`` the length of the HTML body.
    """
    return (
        listable_messages(user)
        .select_related("owner", "mailbox")
        .defer(*HEAVY_FIELDS)
        .annotate(
            text_head=Substr("body_text", 1, BODY_DISPLAY_LIMIT + 1),
            html_length=Length("body_html"),
        )
    )


def message_full_text(*, user: Any, pk: int) -> str:
    """The whole text body of a visible message ("show all")."""
    return listable_messages(user).filter(pk=pk).values_list("body_text", flat=True).get()


def message_html(*, user: Any, limit: int | None) -> QuerySet[Message]:
    """Messages for the HTML frame, with ``html_head``: the first ``limit`` + 1 characters of
    the HTML body (all of it for None)."""
    head = F("body_html") if limit is None else Substr("body_html", 1, limit + 1)
    return listable_messages(user).defer(*HEAVY_FIELDS).annotate(html_head=head)


@dataclass
class Recipients:
    """The first correspondents of one role, and how many there are in all."""

    role: str
    label: str
    shown: list[MessageAddress]
    total: int

    @property
    def hidden(self) -> int:
        return self.total - len(self.shown)


_ROLE_LABELS = {
    AddressRole.TO: _("To"),
    AddressRole.CC: _("Cc"),
    AddressRole.BCC: _("Bcc"),
    AddressRole.REPLY_TO: _("Reply-To"),
}


def message_recipients(*, message: Message, include_bcc: bool, show_all: bool) -> list[Recipients]:
    """To, Cc (and Bcc, for the owner only), Reply-To, each cut at RECIPIENT_DISPLAY_LIMIT
    unless ``show_all``. One query for all the roles: each row numbered within its role and
    told its role's total by window functions, the rows past the limit left in the database."""
    roles = [AddressRole.TO, AddressRole.CC, AddressRole.REPLY_TO]
    if include_bcc:
        roles.insert(2, AddressRole.BCC)
    rows = MessageAddress.objects.filter(message_id=message.pk, role__in=roles).annotate(
        position=Window(RowNumber(), partition_by=[F("role")], order_by=F("pk").asc()),
        role_total=Window(Count("pk"), partition_by=[F("role")]),
    )
    if not show_all:
        rows = rows.filter(position__lte=RECIPIENT_DISPLAY_LIMIT)
    by_role: dict[str, list[Any]] = {}
    for row in rows.order_by("role", "position"):
        by_role.setdefault(row.role, []).append(row)
    return [
        Recipients(role, str(_ROLE_LABELS[role]), by_role[role], by_role[role][0].role_total)
        for role in roles
        if role in by_role
    ]


def message_attachments(message: Message) -> QuerySet[Attachment]:
    """The attachments of a message already checked visible (its rows, never their content)."""
    return Attachment.objects.filter(message_id=message.pk).order_by("pk")


def message_records(*, user: Any, message: Message) -> QuerySet[Record]:
    """The records ``message`` is linked to, for chips."""
    return (
        Record.objects.visible_to(user)
        .filter(message_links__message_id=message.pk)
        .order_by("kind", "display_name", "pk")
    )


def thread_messages(*, user: Any, message: Message) -> QuerySet[Message] | list[Message]:
    """The visible messages of ``message``'s thread, oldest first (only it, without a thread)."""
    if message.thread_id is None:
        return [message]
    return (
        listable_messages(user)
        .filter(thread_id=message.thread_id)
        .defer(*HEAVY_FIELDS)
        .order_by("sort_at", "pk")[:THREAD_DISPLAY_LIMIT]
    )


def readable_attachments(user: Any) -> QuerySet[Attachment]:
    """Attachments of the messages ``user`` may see: the message's rule, through a subquery."""
    return Attachment.objects.filter(
        message_id__in=listable_messages(user).values("pk")
    ).select_related("blob")
