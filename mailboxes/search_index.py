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
one for the Japanese runs). On PostgreSQL the entry is its tsvector: the lexemes split at the
spaces (and "1e5abc" into 1e5 and abc, as ``to_tsvector('simple', text)`` would) and numbered
(their positions make phrases work), built in Python (``search_vector_binary``; for a big
import in its parser process, off the commit's path) and sent in binary, so that the commit
does not wait for the database to parse; one GIN index answers ``@@`` (migration
``0004_message_search_entries``). On SQLite the text itself is the entry, matched with
``LIKE``: the same results, without an index.

Why a table of its own: one GIN index over one small column replaces trigram indexes over
every body, which cost more on each import than everything else the import writes, and made
a common word read thousands of bodies to answer one page.
"""

from __future__ import annotations

import bisect
import io
import re
import struct
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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

# What to_tsvector does with a document's lexemes, written out by search_vector_positions:
# a lexeme of 2,048 bytes or more is dropped (without taking a position); positions over 16,383
# count as 16,383; a lexeme keeps at most 255 positions (PostgreSQL's MAXSTRLEN, MAXENTRYPOS and
# MAXNUMPOS).
_LONGEST_LEXEME = 2047
_LAST_POSITION = 16383
_MOST_POSITIONS = 255
_PLAIN_DOCUMENT = re.compile(r"[^\W_]*(?: [^\W_]*)*")
# The one place where PostgreSQL's default parser cuts a run of ASCII letters and digits: a
# word that starts as a number in scientific notation ("1e5abc", "9e9e9") ends with it, and the
# rest is a word of its own ("1e5" "abc", "9e9" "e9").
_FLOAT_THEN_LETTERS = re.compile(r"(?<![a-z0-9])([0-9]+e[0-9]+)(?=[a-z])")
_MAY_BE_FLOAT = re.compile(r"[0-9]e[0-9]")  # a quicker search, true wherever the above is
# PostgreSQL's binary COPY format (the "COPY" page of its documentation).
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_TRAILER = struct.pack("!h", -1)
_COPY_ROW_START = struct.Struct("!hiqii")  # 4 fields; 8, message id; 0 (document); vector length
_COPY_TIMESTAMP = struct.Struct("!iq")
_INT32 = struct.Struct("!i")
_POSTGRESQL_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


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


# ASCII text's search text in one C pass: letters lowered, digits kept, everything else a
# space (what the general path below makes of ASCII: NFKC leaves it alone, casefold is lower,
# and [\W_] is every character but a letter or a digit).
_ASCII_SEARCH_TEXT = str.maketrans(
    {chr(code): chr(code).lower() if chr(code).isalnum() else " " for code in range(128)}
)


def search_text(text: str) -> str:
    """The lexemes of ``text``, space-separated (see the module docstring)."""
    if text.isascii():  # most mail: several times faster, the same text
        return " ".join(text.translate(_ASCII_SEARCH_TEXT).split())
    return _search_text_of_any(text)


def _search_text_of_any(text: str) -> str:
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


def search_vector_positions(document: str) -> dict[str, list[int]] | None:
    """``document``'s lexemes and their positions, as ``to_tsvector('simple', document)``
    numbers them; None for text that holds anything but letters, digits and single spaces (no
    search document does: ``search_text`` turns the rest into spaces).

    PostgreSQL's parser tells letters by the database's locale; on one that classifies them as
    Unicode does (C.UTF-8, en_US.UTF-8 and the like) the two are identical, which
    tests/mailboxes/test_search_vector.py checks over generated documents and real mail,
    Japanese included. Where a locale would cut a word differently, the vector built here is
    still the one searches expect: ``mailboxes.search`` builds its query lexemes in Python too,
    and never asks the database's parser.
    """
    if _PLAIN_DOCUMENT.fullmatch(document) is None:
        return None
    if _MAY_BE_FLOAT.search(document):
        document = _FLOAT_THEN_LETTERS.sub(r"\1 ", document)
    words = document.split()
    if words and max(map(len, words)) * 4 > _LONGEST_LEXEME:  # 4: UTF-8's longest
        words = [word for word in words if len(word.encode()) <= _LONGEST_LEXEME]
    positions: dict[str, list[int]] = {}
    seen = positions.get
    for position, word in enumerate(words, 1):
        found = seen(word)  # (not setdefault: that makes a list for every word)
        if found is None:
            positions[word] = [position]
        else:
            found.append(position)
    if len(words) >= _LAST_POSITION:
        # Rare (a very long body): the positions from 16,383 on are all 16,383, kept once.
        for found in positions.values():
            if found[-1] >= _LAST_POSITION:
                del found[bisect.bisect_left(found, _LAST_POSITION) + 1 :]
                found[-1] = _LAST_POSITION
    for word, found in positions.items():
        if len(found) > _MOST_POSITIONS:
            positions[word] = found[:_MOST_POSITIONS]
    return positions


def search_vector_binary(document: str) -> bytes | None:
    """``document``'s tsvector (``search_vector_positions``) in PostgreSQL's binary form, what
    ``tsvectorrecv`` reads; None where there are no positions.

    So the import's parser process does the work and the commit only sends the vector, with
    ``COPY ... (FORMAT binary)``: PostgreSQL then neither parses the text (``to_tsvector``, on
    the commit thread's critical path: about 3 ms for a Japanese message, whose lexemes are
    pairs) nor a tsvector's text form (about 0.27 ms a message); docs/benchmarks.md, Import.
    The binary form: the number of lexemes, then each lexeme's UTF-8 bytes, a NUL, its number
    of positions and the positions (16 bits each, weight D being 0), all in network byte
    order; lexemes in PostgreSQL's order (bytewise, which UTF-8 makes Python's code point
    order).
    """
    positions = search_vector_positions(document)
    if positions is None:
        return None
    parts = [_INT32.pack(len(positions))]
    for word in sorted(positions):
        found = positions[word]
        parts.append(word.encode())
        parts.append(struct.pack(f"!xH{len(found)}H", len(found), *found))
    return b"".join(parts)


def _copy_rows(rows: Iterable[tuple[int, bytes, datetime]]) -> bytes:
    """(message id, binary vector, sort_at) rows as the data of ``COPY mailboxes_messagesearch
    (message_id, document, vector, sort_at) FROM STDIN (FORMAT binary)``: each a field count,
    then each field's length and bytes (bigint; an empty text; the vector; timestamptz as
    microseconds since 2000-01-01 UTC)."""
    parts = [_COPY_HEADER]
    for pk, vector, sort_at in rows:
        microseconds = (sort_at - _POSTGRESQL_EPOCH) // _MICROSECOND
        parts.append(_COPY_ROW_START.pack(4, 8, pk, 0, len(vector)))
        parts.append(vector)
        parts.append(_COPY_TIMESTAMP.pack(8, microseconds))
    parts.append(_COPY_TRAILER)
    return b"".join(parts)


def message_search_index(*, message_ids: Sequence[int], using: str = "default") -> int:
    """Write (or rewrite) the search entries of ``message_ids``; return how many.

    Called inside the transaction that stores the messages, so a message is searchable from
    the moment it is visible, and a rolled-back import leaves no entry behind. Three reads
    (messages, correspondents, attachment names) and two writes (the old entries deleted, the
    new ones copied) per call, whatever its size.
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
    *,
    entries: Sequence[tuple[int, str, datetime]],
    vectors: Mapping[int, bytes | None] | None = None,
    new_messages: bool = False,
    using: str = "default",
) -> int:
    """Write (or rewrite) search entries, each (message id, ``document_of`` its fields, its
    sort_at); for a caller that holds the messages already (the importer).

    ``vectors`` may give, by message id, ``search_vector_binary(document)`` already built (the
    import's parser process does); the others are built here. PostgreSQL receives them by
    binary ``COPY``; text that is no search document (which ``search_vector_binary`` refuses)
    goes in one ``INSERT`` through ``to_tsvector``. A message's old entry is deleted first
    (one statement more), unless the caller says the messages are ``new_messages``, created in
    this transaction: on PostgreSQL the table is partitioned by sort_at
    (``mailboxes.search_partitions``), so its key is (message, sort_at) and it cannot replace
    an entry by message alone.
    """
    from mailboxes.models import MessageSearch

    rows = list(entries)
    if not rows:
        return 0
    vectors = vectors or {}
    table = MessageSearch._meta.db_table
    connection = connections[using]
    with transaction.atomic(using=using):
        if not new_messages:
            MessageSearch.objects.using(using).filter(
                message_id__in=[pk for pk, _document, _sort_at in rows]
            ).delete()
        if connection.vendor != "postgresql":
            MessageSearch.objects.using(using).bulk_create(
                [
                    MessageSearch(message_id=pk, document=document, sort_at=sort_at)
                    for pk, document, sort_at in rows
                ]
            )
            return len(rows)
        built, to_parse = [], []
        for pk, document, sort_at in rows:
            vector = vectors.get(pk) or search_vector_binary(document)
            if vector is None:
                to_parse.append((pk, document, sort_at))
            else:
                built.append((pk, vector, sort_at))
        with connection.cursor() as cursor:
            if built:
                cursor.copy_expert(
                    f"COPY {table} (message_id, document, vector, sort_at) "
                    "FROM STDIN WITH (FORMAT binary)",
                    io.BytesIO(_copy_rows(built)),
                )
            if to_parse:
                # PostgreSQL numbers the lexemes; the text itself is not kept (the vector is
                # the entry).
                values = ", ".join([f"(%s, '', to_tsvector('{CONFIG}', %s), %s)"] * len(to_parse))
                cursor.execute(
                    f"INSERT INTO {table} (message_id, document, vector, sort_at) "  # noqa: S608
                    f"VALUES {values}",
                    [value for row in to_parse for value in row],
                )
    return len(rows)
