"""Searching mail: subject, correspondents, body text and attachment names.

The caller passes a queryset that already applies the visibility rule; this only narrows it.

Every word of the query (split on white space, full-width spaces included) must occur as a
substring somewhere in the message: in the subject, the sender, any correspondent's name or
address, the body text, or an attachment's file name. Substrings, not words, because Japanese
is written without spaces: "営業部" must find "第二営業部長". On PostgreSQL those ``icontains``
tests are served by pg_trgm trigram GIN indexes on the same ``UPPER(column)`` expressions
Django generates (migration ``0003_message_search_indexes``), and a full-text match (the
``simple`` configuration, websearch syntax: "quoted phrases", ``or``, ``-word``) is accepted as
well, through a GIN index on the same ``to_tsvector`` expression. SQLite gets the substring
tests alone (``LIKE``, case-insensitive for ASCII), which is the same result for plain words.
"""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connections
from django.db.models import Q, QuerySet
from django.db.models.functions import Left

from mailboxes.models import Attachment, Message, MessageAddress

MAX_QUERY_LENGTH = 200
MAX_TERMS = 8
# The full-text document reads at most this much of the body: a tsvector is limited to 1 MB,
# and an expression index that raised on a huge body would make that message unstorable.
# The migration's index expression must use the same number.
FULL_TEXT_BODY_CHARACTERS = 100_000
FULL_TEXT_CONFIG = "simple"


def search_terms(text: str) -> list[str]:
    """The distinct words of ``text`` (at most MAX_TERMS), in order."""
    words = text[:MAX_QUERY_LENGTH].split()
    return list(dict.fromkeys(words))[:MAX_TERMS]


def _ids_containing(term: str) -> QuerySet[Any]:
    """The ids of all messages where ``term`` occurs: a UNION of three index-backed queries
    (message fields, correspondents, attachment names), used as ``pk IN (...)``, which the
    database runs as a semi-join rather than as a test on every message."""
    in_message = Message.objects.filter(
        Q(subject__icontains=term)
        | Q(from_name__icontains=term)
        | Q(from_address__icontains=term)
        | Q(body_text__icontains=term)
    ).values("pk")
    in_correspondents = MessageAddress.objects.filter(
        Q(address__icontains=term) | Q(name__icontains=term)
    ).values("message_id")
    in_attachments = Attachment.objects.filter(filename__icontains=term).values("message_id")
    return in_message.union(in_correspondents, in_attachments)


def full_text_document() -> SearchVector:
    """The full-text document of a message (the migration indexes this very expression)."""
    return SearchVector(
        "subject",
        "from_name",
        "from_address",
        Left("body_text", FULL_TEXT_BODY_CHARACTERS),
        config=FULL_TEXT_CONFIG,
    )


def messages_matching(messages: QuerySet[Message], text: str) -> QuerySet[Message]:
    """``messages`` narrowed to those matching ``text``; none for an empty query."""
    terms = search_terms(text)
    if not terms:
        return messages.none()
    if connections[messages.db].vendor != "postgresql":
        for term in terms:
            messages = messages.filter(pk__in=_ids_containing(term))
        return messages
    with_every_term = Message.objects.all()
    for term in terms:
        with_every_term = with_every_term.filter(pk__in=_ids_containing(term))
    query = SearchQuery(text[:MAX_QUERY_LENGTH], config=FULL_TEXT_CONFIG, search_type="websearch")
    full_text = Message.objects.alias(document=full_text_document()).filter(document=query)
    return messages.filter(pk__in=full_text.values("pk").union(with_every_term.values("pk")))
