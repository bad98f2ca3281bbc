"""The search entries' tsvector built in Python (``search_vector_literal``) is the one
``to_tsvector('simple', ...)`` makes: same lexemes, same positions, for every document it is
built for; on PostgreSQL, compared with the database itself."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from bench.corpus import address_pool, corpus_messages
from mailboxes.models import Message, MessageSearch
from mailboxes.parsing import parse_message
from mailboxes.search_index import (
    document_of,
    parsed_message_document,
    search_entries_write,
    search_vector_literal,
)
from tests.conftest import Team
from tests.mailboxes.factories import MessageFactory

EML = Path(__file__).parent / "eml"


def test_positions_are_the_word_numbers() -> None:
    assert search_vector_literal(" cv for taro cv ") == "cv:1,4 for:2 taro:3"


def test_scientific_notation_ends_a_word_as_in_postgresql() -> None:
    # PostgreSQL's parser reads "1e5abc" as the number 1e5 and the word abc (ts_debug).
    assert search_vector_literal("1e5abc 9e9e9 abc1e5 12e") == (
        "1e5:1 abc:2 9e9:3 e9:4 abc1e5:5 12e:6"
    )


def test_long_words_are_dropped_without_a_position() -> None:
    assert search_vector_literal(f"a {'b' * 2048} c {'d' * 2047}") == f"a:1 c:2 {'d' * 2047}:3"


def test_positions_stop_at_16383_and_255_per_lexeme() -> None:
    literal = search_vector_literal(" ".join(["x"] * 300 + ["y"] * 17000 + ["z"]))
    assert literal is not None
    x, y, z = literal.split(" ")
    assert x == "x:" + ",".join(str(n) for n in range(1, 256))
    assert y == "y:" + ",".join(str(n) for n in range(301, 556))
    assert z == "z:16383"


def test_not_built_beyond_ascii_letters_and_digits() -> None:
    # Other characters are classified by the database's locale: left to to_tsvector.
    assert search_vector_literal(document_of(["第二営業部"])) is None
    assert search_vector_literal(document_of(["Café"])) is None
    assert search_vector_literal("") == ""


def _documents() -> list[str]:
    """Real mail (the fixtures and the benchmark's corpus) and generated worst cases."""
    documents = [
        parsed_message_document(parse_message(path.read_bytes()))
        for path in sorted(EML.rglob("*.eml"))
    ]
    documents += [
        parsed_message_document(parse_message(raw))
        for raw in corpus_messages(count=300, pool=address_pool())
    ]
    rng = random.Random(3)  # noqa: S311 -- test data
    for alphabet in ("0123456789eax", "0e1", "e19", "abcde0123456789"):
        for length in (1, 5, 50, 400):
            words = ("".join(rng.choices(alphabet, k=rng.randint(1, 9))) for _ in range(length))
            documents.append(f" {' '.join(words)} ")
    documents.append(" ".join(["the"] * 400 + ["x"] * 20000 + ["y"] * 3))
    documents.append(f"a {'b' * 2047} {'c' * 2048} c")
    return documents


def test_postgresql_makes_the_same_vector_from_the_text(postgresql_cursor: Any) -> None:
    documents = _documents()
    built = 0
    for document in documents:
        literal = search_vector_literal(document)
        if literal is None:
            continue
        built += 1
        postgresql_cursor.execute(
            "SELECT to_tsvector('simple', %s)::text, %s::tsvector::text", [document, literal]
        )
        from_text, from_literal = postgresql_cursor.fetchone()
        assert from_literal == from_text, document[:200]
    assert built > len(documents) // 2  # most real mail is ASCII once normalised


@pytest.mark.django_db
def test_entries_written_from_vectors_are_those_written_from_text(team: Team) -> None:
    documents = [document_of(["Interview on 1e5abc Tuesday"]), document_of(["面接の日程"])]
    first: Message = MessageFactory(owner=team.owner)
    second: Message = MessageFactory(owner=team.owner)
    messages = [first, second]
    now = timezone.now()
    entries = [(m.pk, d, now) for m, d in zip(messages, documents, strict=True)]
    search_entries_write(entries=entries)
    from_text = list(MessageSearch.objects.order_by("message_id").values_list("document", "vector"))
    search_entries_write(
        entries=entries,
        vectors={m.pk: search_vector_literal(d) for m, d in zip(messages, documents, strict=True)},
    )
    from_vectors = list(
        MessageSearch.objects.order_by("message_id").values_list("document", "vector")
    )
    assert from_vectors == from_text
    assert search_vector_literal(documents[0]) is not None
