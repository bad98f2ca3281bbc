"""Template tags of the mail reading pages: the header's mailbox switcher and folder links, the
rows of the mail lists and record chips.

A list page shows 25 rows, each with links, a date and record chips. Rendered with an
``{% include %}``, a ``{% url %}``, date filters and translations per row and per chip, the rows
took 9.6 ms of a page's 25-30 ms of Python. Here what every row shares is worked out once per
page (the URL patterns, the kinds' labels, the date format), each row becomes a small dict, and
one template places the values of all rows: 4.3 ms (docs/benchmarks.md, bench/pages.py).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypedDict

from django import template
from django.utils import dateformat, formats, timezone
from django.utils.text import Truncator

from mailboxes import selectors
from mailboxes.models import Direction, Message
from mailboxes.selectors import MailNavigation
from records.models import Record
from recruitmail.urlpk import SENTINEL_PK, url_pattern, url_with_pk

register = template.Library()

SNIPPET_DISPLAY_CHARS = 140


@register.simple_tag(takes_context=True)
def mail_navigation(context: template.Context) -> MailNavigation:
    """The signed-in member's mailboxes (one query), the active one, and whether the client
    folder is on for it: the view's ``mailnav`` when it read them already. Use inside
    ``{% if membership %}``."""
    given = context.get("mailnav")
    if isinstance(given, MailNavigation):
        return given
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or getattr(user, "membership", None) is None:
        return MailNavigation(mailboxes=[], active=None, client_folder=False)
    return selectors.mail_navigation(user)


class RecordChip(TypedDict):
    """What ``includes/record_chips.html`` shows of one record."""

    kind: str
    url: str
    label: str
    name: str


class _ChipMaker:
    """Record chips for one page: each kind's URL pattern and label worked out once, from a
    record of that kind (``Record.get_absolute_url`` stays the one place of the rule)."""

    def __init__(self) -> None:
        self._kinds: dict[str, tuple[Callable[[int], str], str]] = {}

    def __call__(self, record: Record) -> RecordChip:
        kind = record.kind
        if kind not in self._kinds:
            sample = Record(pk=SENTINEL_PK, kind=kind)
            self._kinds[kind] = (
                url_pattern(sample.get_absolute_url()),
                str(sample.get_kind_display()),
            )
        url_of, label = self._kinds[kind]
        return {"kind": kind, "url": url_of(record.pk), "label": label, "name": record.display_name}


def _snippet(text: str) -> str:
    """``text|truncatechars:SNIPPET_DISPLAY_CHARS``. A text that short, in NFC, comes back as
    it is without Truncator's look at each character's Unicode class (there is nothing to cut)."""
    if len(text) <= SNIPPET_DISPLAY_CHARS and unicodedata.is_normalized("NFC", text):
        return text
    return Truncator(text).chars(SNIPPET_DISPLAY_CHARS)


class MessageRow(TypedDict):
    """What ``includes/message_rows.html`` shows of one message."""

    url: str
    unread: bool
    outgoing: bool
    # The first recipient of sent mail, else the sender's name or address ("" when unknown).
    who: str
    # The mailbox's owner when it is not the viewer ("in X's mailbox"), else None.
    owner: Any
    subject: str
    snippet: str
    chips: list[RecordChip]
    has_attachments: bool
    when_iso: str
    when: str


def message_list_rows(messages: Iterable[Message], *, viewer_id: int | None) -> list[MessageRow]:
    """The rows of a mail list for ``messages`` (from ``mailboxes.selectors.message_rows``),
    as ``viewer_id`` sees them; dates in the active time zone and language, formatted as the
    template filters ``date:'c'`` and ``date:'SHORT_DATETIME_FORMAT'`` do."""
    url_of_message = url_with_pk("mail:message")
    chip = _ChipMaker()
    short_format = formats.get_format("SHORT_DATETIME_FORMAT")
    rows: list[MessageRow] = []
    for message in messages:
        mine = message.owner_id == viewer_id
        outgoing = message.direction == Direction.OUTGOING
        if outgoing:
            who = getattr(message, "first_recipient", None) or ""
        else:
            who = message.from_name or message.from_address or ""
        when: datetime = timezone.localtime(message.sort_at)  # USE_TZ: sort_at is aware
        rows.append(
            {
                "url": url_of_message(message.pk),
                "unread": mine and not message.is_read,
                "outgoing": outgoing,
                "who": who,
                "owner": None if mine else message.owner,
                "subject": message.subject,
                "snippet": _snippet(message.snippet),
                "chips": [chip(record) for record in getattr(message, "visible_records", ())],
                "has_attachments": message.has_attachments,
                "when_iso": when.isoformat(),
                "when": dateformat.format(when, short_format),
            }
        )
    return rows


@register.inclusion_tag("includes/message_rows.html", takes_context=True)
def message_rows(context: template.Context, messages: Iterable[Message]) -> dict[str, Any]:
    """``{% message_rows page %}``: the table rows of a page of mail, for the signed-in user."""
    user = context.get("user")
    return {"rows": message_list_rows(messages, viewer_id=getattr(user, "pk", None))}


@register.inclusion_tag("includes/record_chips.html")
def record_chips(records: Iterable[Record]) -> dict[str, Any]:
    """``{% record_chips records %}``: a chip (a link with the kind's colour) per record."""
    chip = _ChipMaker()
    return {"chips": [chip(record) for record in records]}
