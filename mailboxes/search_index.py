"""The search index: one ``MessageSearch`` entry per message, written with the message.

What a search can find is the message's *search text*: its subject, sender, correspondents
(names and addresses), attachment names and body, normalised (NFKC, case-folded) and cut into
space-separated lexemes:

- **words** of letters and digits in any script written with spaces (``taro``, ``yamada``,
  ``example``, ``jp`` from "Taro.Yamada@Example.jp": punctuation separates), matched by prefix:
  "yama" finds "yamada";
- **overlapping pairs of characters** in Japanese, Chinese and Korean text, which is written
  without spaces ("第二営業部" gives 第二 二営 営業 業部, and 部 alone at the end), so that any
  run of two or more characters is found as the phrase of its pairs ("営業部" is 営業 followed
  by 業部), and a single character by prefix (the n-gram indexing of Lucene's CJK analyser; a
  dictionary-based Japanese tokeniser would miss "営業部" inside an unknown compound).

Python builds that text with a few C-speed passes (normalise, one substitution for punctuation,
one for the Japanese runs); on PostgreSQL, ``to_tsvector('simple', text)`` then only splits it
at the spaces and numbers the lexemes (their positions make phrases work), in C, in the
database, and one GIN index answers ``@@`` (migration ``0004_message_search_entries``). On
SQLite the text itself is the entry, matched with ``LIKE``: the same results, without an index.

Why a table of its own: one GIN index over one small column replaces trigram indexes over
every body, which cost more on each import than everything else the import writes, and made
a common word read thousands of bodies to answer one page.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import connections, transaction

if TYPE_CHECKING:
    from mailboxes.parsing import ParsedMessage

# Scripts written without spaces: Hiragana, Katakana (with ー), CJK ideographs and their
# extensions and compatibility forms, Hangul syllables. (Half-width Katakana becomes full
# width under NFKC first.)
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\U00020000-\U0002fa1f"
_CJK_RUN = re.compile(f"[{_CJK}]+")
_CJK_CHARACTER = re.compile(f"[{_CJK}]")
_SEPARATORS = re.compile(r"[\W_]+")

# How much body text is indexed: enough for any real letter or CV, while a 50 MB body cannot
# make an entry larger than PostgreSQL's 1 MB limit for a tsvector.
MAX_BODY_CHARACTERS = 50_000
# And the whole entry: a message with thousands of recipients or attachments stays well inside
# that limit too (what lies beyond is not searchable; the message is still stored whole).
MAX_DOCUMENT_CHARACTERS = 200_000
# The text search configuration: "simple" lowercases and keeps every lexeme (no stemming, no
# stop words), so the lexemes PostgreSQL stores are the ones built here.
CONFIG = "simple"


@dataclass(frozen=True)
class Token:
    """One lexeme of a query; ``exact`` is False for a word (or a lone Japanese character),
    which may match by prefix."""

    lexeme: str
    exact: bool


def _pairs(match: re.Match[str]) -> str:
    run = match.group()
    pairs = [run[i : i + 2] for i in range(len(run) - 1)]
    return f" {' '.join([*pairs, run[-1]])} "


def search_text(text: str) -> str:
    """The lexemes of ``text``, space-separated (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _SEPARATORS.sub(" ", text)  # NULs, punctuation, symbols and spaces of every kind
    if _CJK_CHARACTER.search(text):
        text = _CJK_RUN.sub(_pairs, text)
    return " ".join(text.split())


def tokens(text: str) -> list[Token]:
    """The lexemes of a query term, in order; pairs of Japanese characters must match
    exactly, words and single characters by prefix."""
    return [
        Token(lexeme, exact=len(lexeme) == 2 and bool(_CJK_CHARACTER.match(lexeme)))
        for lexeme in search_text(text).split()
    ]


def quote_lexeme(lexeme: str) -> str:
    """A lexeme in tsquery text form: quoted, with ' and \\ doubled."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def document_of(fields: Iterable[str]) -> str:
    """A message's search text, with a space at either end so that ``LIKE '% word%'`` finds
    a word's start on SQLite."""
    text = " ".join(filter(None, map(search_text, fields)))
    if len(text) > MAX_DOCUMENT_CHARACTERS:
        text = text[:MAX_DOCUMENT_CHARACTERS].rpartition(" ")[0]  # not half a lexeme
    return f" {text} "


def message_fields(
    *,
    subject: str,
    from_name: str,
    from_address: str,
    correspondents: Iterable[tuple[str, str]],
    attachment_names: Iterable[str],
    body_text: str,
) -> list[str]:
    """What is searchable in a message, field by field."""
    return [
        subject,
        from_name,
        from_address,
        *(part for name, address in correspondents for part in (name, address)),
        *attachment_names,
        body_text[:MAX_BODY_CHARACTERS],
    ]


def parsed_message_document(parsed: ParsedMessage) -> str:
    """The search text of a message about to be imported, from its parse alone.

    The same text ``message_search_index`` builds from the stored rows (the parse's fields are
    already within the columns' lengths): the import's parser process computes it beside the
    parse, so that the worker's commit does not have to.
    """
    sender = parsed.sender
    people = [*([sender] if sender else []), *parsed.to, *parsed.cc, *parsed.bcc]
    people += parsed.reply_to
    return document_of(
        message_fields(
            subject=parsed.subject[:998],
            from_name=(sender.name if sender else "")[:300],
            from_address=sender.address if sender else "",
            # In the order the import stores them (mailboxes.storing._correspondents).
            correspondents=[(person.name[:300], person.address) for person in people],
            attachment_names=[part.filename[:255] for part in parsed.attachments],
            body_text=parsed.text_body,
        )
    )


def message_search_index(*, message_ids: Sequence[int], using: str = "default") -> int:
    """Write (or rewrite) the search entries of ``message_ids``; return how many.

    Called inside the transaction that stores the messages, so a message is searchable from
    the moment it is visible, and a rolled-back import leaves no entry behind. Three reads
    (messages, correspondents, attachment names) and one write per call, whatever its size.
    """
    from mailboxes.models import Attachment, Message, MessageAddress

    if not message_ids:
        return 0
    people: dict[int, list[tuple[str, str]]] = {}
    for message_id, name, address in (
        MessageAddress.objects.using(using)
        .filter(message_id__in=message_ids)
        .values_list("message_id", "name", "address")
    ):
        people.setdefault(message_id, []).append((name, address))
    files: dict[int, list[str]] = {}
    for message_id, filename in (
        Attachment.objects.using(using)
        .filter(message_id__in=message_ids)
        .values_list("message_id", "filename")
    ):
        files.setdefault(message_id, []).append(filename)
    entries: list[tuple[int, str, datetime]] = []
    for pk, subject, from_name, from_address, body_text, sort_at in (
        Message.objects.using(using)
        .filter(pk__in=message_ids)
        .values_list("pk", "subject", "from_name", "from_address", "body_text", "sort_at")
    ):
        document = document_of(
            message_fields(
                subject=subject,
                from_name=from_name,
                from_address=from_address,
                correspondents=people.get(pk, []),
                attachment_names=files.get(pk, []),
                body_text=body_text,
            )
        )
        entries.append((pk, document, sort_at))
    return search_entries_write(entries=entries, using=using)


def search_entries_write(
    *, entries: Sequence[tuple[int, str, datetime]], using: str = "default"
) -> int:
    """Write (or rewrite) search entries, each (message id, ``document_of`` its fields, its
    sort_at), in one statement; for a caller that holds the messages already (the importer)."""
    from mailboxes.models import MessageSearch

    rows = list(entries)
    if not rows:
        return 0
    with transaction.atomic(using=using):
        if connections[using].vendor == "postgresql":
            table = MessageSearch._meta.db_table
            # PostgreSQL numbers the lexemes; the text itself is not kept (the vector is the entry).
            values = ", ".join([f"(%s, '', to_tsvector('{CONFIG}', %s), %s)"] * len(rows))
            with connections[using].cursor() as cursor:
                # ON CONFLICT: re-indexing a message (a rebuild) replaces its entry.
                cursor.execute(
                    f"INSERT INTO {table} (message_id, document, vector, sort_at) "  # noqa: S608
                    f"VALUES {values} ON CONFLICT (message_id) "
                    "DO UPDATE SET vector = EXCLUDED.vector, sort_at = EXCLUDED.sort_at",
                    [value for row in rows for value in row],
                )
        else:
            MessageSearch.objects.using(using).bulk_create(
                [
                    MessageSearch(message_id=pk, document=document, sort_at=sort_at)
                    for pk, document, sort_at in rows
                ],
                update_conflicts=True,
                unique_fields=["message"],
                update_fields=["document", "sort_at"],
            )
    return len(rows)
