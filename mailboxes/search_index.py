"""The search index: one ``MessageSearch`` entry per message, written with the message.

What a search can find is the message's *lexemes*: the text of its subject, sender,
correspondents (names and addresses), attachment names and body, normalised (NFKC, case-folded)
and cut into

- **words** of letters and digits in any script written with spaces (``taro``, ``yamada``,
  ``example``, ``jp`` from "Taro.Yamada@Example.jp"), matched by prefix: "yama" finds "yamada";
- **overlapping pairs of characters** in Japanese, Chinese and Korean text, which is written
  without spaces ("第二営業部" gives 第二, 二営, 営業, 業部, and 部 alone at the end), so that
  any run of two or more characters is found as the phrase of its pairs ("営業部" is
  "営業 followed by 業部"), and a single character by prefix (the n-gram indexing of Lucene's
  CJK analyser; a dictionary-based Japanese tokeniser would miss "営業部" inside an unknown
  compound).

Each lexeme keeps its position, so a phrase matches only where its parts stand side by side. On
PostgreSQL the entry is a ``tsvector`` built here (cast from its text form, so PostgreSQL's own
parser never re-splits an address or a Japanese word), matched with ``@@`` through one GIN
index (migration ``0004_message_search_entries``). On SQLite it is the same lexemes as one
space-separated string, matched with ``LIKE``: the same results, without an index.

Why a table of its own: one GIN index over one small column replaces trigram indexes over
every body, which cost more on each import than everything else the import writes, and made
a common word read thousands of bodies to answer one page.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import connections, transaction

# Scripts written without spaces: Hiragana, Katakana (with ー), CJK ideographs and their
# extensions and compatibility forms, Hangul syllables. (Half-width Katakana becomes full
# width under NFKC first.)
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\U00020000-\U0002fa1f"
_TOKEN = re.compile(rf"(?P<cjk>[{_CJK}]+)|(?P<word>[^\W_{_CJK}]+)")

# A lexeme longer than this is cut (a base64 line or a hash, not a word anyone types); the
# tsvector limit is 2 KB per lexeme.
MAX_LEXEME_CHARACTERS = 60
# How much body text is indexed: enough for any real letter or CV, while a 50 MB body cannot
# make an entry larger than PostgreSQL's 1 MB limit for a tsvector.
MAX_BODY_CHARACTERS = 50_000
# PostgreSQL keeps positions 1..16383 and at most 256 of them per lexeme.
MAX_POSITION = 16383
MAX_POSITIONS_PER_LEXEME = 255
# Fields are kept apart so that a phrase never runs from the subject into the sender.
FIELD_GAP = 8


@dataclass(frozen=True)
class Token:
    """One lexeme of a text; ``exact`` is False for a word (or a lone Japanese character),
    which a query may match by prefix."""

    lexeme: str
    exact: bool


def normalise(text: str) -> str:
    """NFKC and case folding: full-width Ｔａｒｏ is taro, ﾀﾛｳ is タロウ; NULs dropped."""
    return unicodedata.normalize("NFKC", text.replace("\x00", " ")).casefold()


def tokens(text: str) -> list[Token]:
    """The lexemes of ``text`` in order (see the module docstring)."""
    found: list[Token] = []
    for match in _TOKEN.finditer(normalise(text)):
        if match.group("word"):
            found.append(Token(match.group("word")[:MAX_LEXEME_CHARACTERS], exact=False))
            continue
        run = match.group("cjk")
        found.extend(Token(run[i : i + 2], exact=True) for i in range(len(run) - 1))
        found.append(Token(run[-1], exact=False))
    return found


def lexemes_of(fields: Iterable[str]) -> list[tuple[str, int]]:
    """(lexeme, position) for every token of ``fields``, positions counted across them."""
    placed: list[tuple[str, int]] = []
    position = 0
    for field in fields:
        for token in tokens(field):
            position += 1
            placed.append((token.lexeme, min(position, MAX_POSITION)))
        position += FIELD_GAP
    return placed


def quote_lexeme(lexeme: str) -> str:
    """A lexeme in tsvector/tsquery text form: quoted, with ' and \\ doubled."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector_text(placed: Sequence[tuple[str, int]]) -> str:
    """The text form of a tsvector holding ``placed`` ('lexeme':1,5 ...)."""
    positions: dict[str, list[int]] = {}
    for lexeme, position in placed:
        kept = positions.setdefault(lexeme, [])
        if len(kept) < MAX_POSITIONS_PER_LEXEME and (not kept or kept[-1] != position):
            kept.append(position)
    return " ".join(
        f"{quote_lexeme(lexeme)}:{','.join(map(str, kept))}" for lexeme, kept in positions.items()
    )


def document_text(placed: Sequence[tuple[str, int]]) -> str:
    """The SQLite form: the lexemes in order, space-separated, with a space at either end so
    that ``LIKE '% word%'`` finds a word's start; a field gap is a lone ``|``, which no token
    contains, so a phrase never matches across fields."""
    words: list[str] = [""]
    last = 0
    for lexeme, position in placed:
        if position > last + 1 and last:
            words.append("|")
        words.append(lexeme)
        last = position
    words.append("")
    return " ".join(words)


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


def message_search_index(*, message_ids: Sequence[int], using: str = "default") -> int:
    """Write (or rewrite) the search entries of ``message_ids``; return how many.

    Called inside the transaction that stores the messages, so a message is searchable from
    the moment it is visible, and a rolled-back import leaves no entry behind. Three reads
    (messages, correspondents, attachment names) and one write per call, whatever its size.
    """
    from mailboxes.models import Attachment, Message, MessageAddress, MessageSearch

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
    rows: list[tuple[int, str]] = []
    postgresql = connections[using].vendor == "postgresql"
    for pk, subject, from_name, from_address, body_text in (
        Message.objects.using(using)
        .filter(pk__in=message_ids)
        .values_list("pk", "subject", "from_name", "from_address", "body_text")
    ):
        placed = lexemes_of(
            message_fields(
                subject=subject,
                from_name=from_name,
                from_address=from_address,
                correspondents=people.get(pk, []),
                attachment_names=files.get(pk, []),
                body_text=body_text,
            )
        )
        rows.append((pk, tsvector_text(placed) if postgresql else document_text(placed)))
    if not rows:
        return 0
    with transaction.atomic(using=using):
        if postgresql:
            table = MessageSearch._meta.db_table
            values = ", ".join(["(%s, '', %s::tsvector)"] * len(rows))
            with connections[using].cursor() as cursor:
                # ON CONFLICT: re-indexing a message (a rebuild) replaces its entry.
                cursor.execute(
                    f"INSERT INTO {table} (message_id, document, vector) VALUES {values} "  # noqa: S608
                    "ON CONFLICT (message_id) DO UPDATE SET vector = EXCLUDED.vector",
                    [value for row in rows for value in row],
                )
        else:
            MessageSearch.objects.using(using).bulk_create(
                [MessageSearch(message_id=pk, document=document) for pk, document in rows],
                update_conflicts=True,
                unique_fields=["message"],
                update_fields=["document"],
            )
    return len(rows)
