"""The search entries' tsvector built in Python (``search_vector_positions``, sent in binary
form by ``search_vector_binary``) is the one ``to_tsvector('simple', ...)`` makes: same
lexemes, same positions, for every document it is built for; on PostgreSQL, compared with the
database itself, through the same binary COPY the importer uses."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from bench.corpus import address_pool, corpus_messages
from mailboxes.models import Message, MessageSearch
from mailboxes.parsing import parse_message
from mailboxes.search_index import (
    _copy_rows,
    document_of,
    parsed_message_document,
    search_entries_write,
    search_vector_binary,
    search_vector_positions,
)
from tests.conftest import Team
from tests.mailboxes.factories import MessageFactory

EML = Path(__file__).parent / "eml"


def test_positions_are_the_word_numbers() -> None:
    assert search_vector_positions(" cv for taro cv ") == {"cv": [1, 4], "for": [2], "taro": [3]}


def test_scientific_notation_ends_a_word_as_in_postgresql() -> None:
    # PostgreSQL's parser reads "1e5abc" as the number 1e5 and the word abc (ts_debug).
    assert search_vector_positions("1e5abc 9e9e9 abc1e5 12e") == {
        "1e5": [1],
        "abc": [2],
        "9e9": [3],
        "e9": [4],
        "abc1e5": [5],
        "12e": [6],
    }


def test_long_words_are_dropped_without_a_position() -> None:
    assert search_vector_positions(f"a {'b' * 2048} c {'d' * 2047}") == {
        "a": [1],
        "c": [2],
        "d" * 2047: [3],
    }


def test_positions_stop_at_16383_and_255_per_lexeme() -> None:
    positions = search_vector_positions(" ".join(["x"] * 300 + ["y"] * 17000 + ["z"]))
    assert positions == {
        "x": list(range(1, 256)),
        "y": list(range(301, 556)),
        "z": [16383],
    }


def test_built_for_any_search_text_and_nothing_else() -> None:
    # Japanese pairs and accented words are lexemes like any other (the database's locale is
    # not asked: the query side never asks it either, mailboxes.search).
    assert search_vector_positions(document_of(["第二営業部"])) == {
        "第二": [1],
        "二営": [2],
        "営業": [3],
        "業部": [4],
        "部": [5],
    }
    assert search_vector_positions(document_of(["Café"])) == {"café": [1]}
    assert search_vector_positions("") == {}
    # Text that document_of would not make (punctuation left in) is left to to_tsvector.
    assert search_vector_positions("taro.yamada") is None
    assert search_vector_binary("snake_case") is None
    # A lexeme's limit is 2,047 bytes of UTF-8, not characters.
    assert search_vector_positions(f"a {'営' * 682} {'営' * 683}") == {"a": [1], "営" * 682: [2]}


def test_the_binary_form_is_postgresqls() -> None:
    # Lexemes in byte order, each NUL-terminated with its count of positions and the positions.
    assert search_vector_binary("cv for cv") == (
        b"\x00\x00\x00\x02" + b"cv\x00" + b"\x00\x02\x00\x01\x00\x03" + b"for\x00\x00\x01\x00\x02"
    )


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
    built = [
        (number, vector, document)
        for number, document in enumerate(documents)
        if (vector := search_vector_binary(document)) is not None
    ]
    assert len(built) == len(documents)  # every search document
    assert sum(not document.isascii() for _, _, document in built) > 30  # Japanese mail too
    postgresql_cursor.execute(
        "CREATE TEMP TABLE received (message_id bigint, document text, vector tsvector, "
        "sort_at timestamptz)"
    )
    at = datetime(2026, 11, 26, 12, 30, 15, 123456, tzinfo=UTC)
    postgresql_cursor.copy_expert(
        "COPY received (message_id, document, vector, sort_at) FROM STDIN WITH (FORMAT binary)",
        io.BytesIO(_copy_rows([(number, vector, at) for number, vector, _ in built])),
    )
    differ = []
    for number, _vector, document in built:
        postgresql_cursor.execute(
            "SELECT vector::text, to_tsvector('simple', %s)::text, sort_at = %s "
            "FROM received WHERE message_id = %s",
            [document, at, number],
        )
        received, from_text, same_time = postgresql_cursor.fetchone()
        assert same_time
        if received != from_text:
            differ.append(document[:200])
    assert differ == []


@pytest.mark.django_db
def test_entries_written_from_vectors_are_those_written_from_text(team: Team) -> None:
    documents = [document_of(["Interview on 1e5abc Tuesday"]), document_of(["面接の日程"])]
    first: Message = MessageFactory(owner=team.owner)
    second: Message = MessageFactory(owner=team.owner)
    messages = [first, second]
    now = timezone.now()
    entries = [(m.pk, d, now) for m, d in zip(messages, documents, strict=True)]
    search_entries_write(entries=entries)
    from_text = list(
        MessageSearch.objects.order_by("message_id").values_list("document", "vector", "sort_at")
    )
    search_entries_write(
        entries=entries,
        vectors={m.pk: search_vector_binary(d) for m, d in zip(messages, documents, strict=True)},
    )
    from_vectors = list(
        MessageSearch.objects.order_by("message_id").values_list("document", "vector", "sort_at")
    )
    assert from_vectors == from_text
    assert search_vector_binary(documents[0]) is not None


def test_ascii_search_text_is_the_general_one() -> None:
    """search_text's one-pass path for ASCII makes what the general path makes of it."""
    from mailboxes.search_index import _search_text_of_any, search_text

    rng = random.Random(11)  # noqa: S311 -- test data
    alphabet = [chr(code) for code in range(128)]
    samples = ["".join(rng.choices(alphabet, k=rng.randint(0, 60))) for _ in range(20_000)]
    samples += [
        parse_message(raw).text_body for raw in corpus_messages(count=200, pool=address_pool())
    ]
    samples += ["Taro.Yamada@Example.JP", "snake_case\x00NUL\x1ffs", "  1e5abc\tTAB\r\n"]
    ascii_samples = [sample for sample in samples if sample.isascii()]
    assert len(ascii_samples) > 20_000
    assert [search_text(s) for s in ascii_samples] == [
        _search_text_of_any(s) for s in ascii_samples
    ]
