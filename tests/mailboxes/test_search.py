"""Search across all the mail a user may see, on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from mailboxes.models import AddressRole, Mailbox, Message, MessageSearch
from mailboxes.search import messages_matching, search_terms
from mailboxes.search_index import (
    MAX_DOCUMENT_CHARACTERS,
    document_of,
    message_search_index,
    tokens,
)
from records.models import User
from sharing.models import Permission
from tests.conftest import Team
from tests.mailboxes.factories import MailboxFactory, MessageFactory, attachment_add
from tests.records.factories import CandidateFactory
from tests.sharing.messages import sharing_set

pytestmark = pytest.mark.django_db
# The tsvector and its GIN index are PostgreSQL's (tests/peers/postgresql.py).
on_postgresql = pytest.mark.postgresql_schema


@pytest.fixture
def mailbox(team: Team) -> Mailbox:
    return MailboxFactory(owner=team.owner, email_address="owner@sakura.example")


def _found(team: Team, user: User, query: str) -> list[str]:
    """The subjects the search page lists for ``query``."""
    response = team.client_for(user).get(reverse("mail:search"), {"q": query})
    assert response.status_code == 200
    return [message.subject for message in response.context["page"]]


def test_search_words_in_every_field(
    team: Team, mailbox: Mailbox, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = str(tmp_path)
    MessageFactory(owner=team.owner, mailbox=mailbox, subject="第二営業部長のご紹介")
    MessageFactory(
        owner=team.owner, mailbox=mailbox, subject="Body", body_text="本日は面接にお越しいただき"
    )
    MessageFactory(
        owner=team.owner,
        mailbox=mailbox,
        subject="Cc",
        addresses=[(AddressRole.FROM, "a@x.example"), (AddressRole.CC, "hana@fuji-kk.example")],
    )
    MessageFactory(owner=team.owner, mailbox=mailbox, subject="Sender", from_name="鈴木 花子")
    with_file = MessageFactory(owner=team.owner, mailbox=mailbox, subject="File")
    attachment_add(with_file, filename="職務経歴書_山田.pdf")

    assert _found(team, team.owner, "営業部") == ["第二営業部長のご紹介"]
    assert _found(team, team.owner, "面接") == ["Body"]
    assert _found(team, team.owner, "FUJI-kk") == ["Cc"]
    assert _found(team, team.owner, "花子") == ["Sender"]
    assert _found(team, team.owner, "経歴書") == ["File"]
    assert _found(team, team.owner, "職務経歴書\u3000山田") == [
        "File"
    ]  # full-width space: two words
    assert _found(team, team.owner, "経歴書 営業部") == []  # every word must match
    assert _found(team, team.owner, "   ") == []


def test_search_finds_only_visible_undeleted_mail(team: Team, mailbox: Mailbox) -> None:
    candidate = CandidateFactory(organization=team.organization, owner=team.owner)
    MessageFactory(
        owner=team.owner, mailbox=mailbox, subject="内定のお知らせ private", records=[candidate]
    )
    MessageFactory(
        owner=team.owner, mailbox=mailbox, subject="内定 binned", deleted_at=timezone.now()
    )
    public_box = MailboxFactory(owner=team.admin)
    sharing_set(public_box, permission=Permission.PUBLIC)
    MessageFactory(owner=team.admin, mailbox=public_box, subject="内定 shared", records=[candidate])
    outsider_box = MailboxFactory(owner=team.outsider)
    MessageFactory(owner=team.outsider, mailbox=outsider_box, subject="内定 elsewhere")

    assert sorted(_found(team, team.owner, "内定")) == ["内定 shared", "内定のお知らせ private"]
    assert _found(team, team.teammate, "内定") == ["内定 shared"]
    assert _found(team, team.outsider, "内定") == ["内定 elsewhere"]


def test_search_terms() -> None:
    assert search_terms("  山田\u3000太郎  山田 ") == ["山田", "太郎"]
    assert search_terms('"senior engineer" -osaka') == ["senior engineer", "osaka"]
    assert len(search_terms(" ".join(f"w{n}" for n in range(20)))) == 8


def test_lexemes_of_latin_and_japanese_text() -> None:
    assert [t.lexeme for t in tokens("Taro.Yamada@Example.JP")] == [
        "taro",
        "yamada",
        "example",
        "jp",
    ]
    # Japanese: overlapping pairs, the last character alone; half-width kana widened.
    assert [t.lexeme for t in tokens("第二営業部 ｶﾅ")] == [
        "第二",
        "二営",
        "営業",
        "業部",
        "部",
        "カナ",
        "ナ",
    ]
    assert [t.lexeme for t in tokens("ＡＢＣ株式会社")] == ["abc", "株式", "式会", "会社", "社"]
    assert tokens("-- ... !!") == []


def test_search_entry_survives_awkward_text(team: Team, mailbox: Mailbox) -> None:
    """Quotes, backslashes, control characters and very long tokens in any field are stored and found."""
    MessageFactory(
        owner=team.owner,
        mailbox=mailbox,
        subject="O'Brien \\ back\\slash",
        body_text="x" * 5000 + " tail\x01word " + "長" * 3000,
    )
    assert _found(team, team.owner, "o'brien") == ["O'Brien \\ back\\slash"]
    assert _found(team, team.owner, "slash") == ["O'Brien \\ back\\slash"]
    assert _found(team, team.owner, "tail word") == ["O'Brien \\ back\\slash"]
    assert _found(team, team.owner, "長長長") == ["O'Brien \\ back\\slash"]


def test_thousands_of_recipients_make_a_bounded_entry(team: Team, mailbox: Mailbox) -> None:
    many = [(AddressRole.TO, f"person{n}@firm{n}.example") for n in range(12_000)]
    MessageFactory(owner=team.owner, mailbox=mailbox, subject="Mass mail", addresses=many)
    entry = MessageSearch.objects.get(message__subject="Mass mail")
    if connection.vendor != "postgresql":
        assert len(entry.document) <= MAX_DOCUMENT_CHARACTERS + 2
    assert _found(team, team.owner, "person1@firm1") == ["Mass mail"]


def test_query_language(team: Team, mailbox: Mailbox) -> None:
    MessageFactory(owner=team.owner, mailbox=mailbox, subject="Senior engineer Tokyo")
    MessageFactory(owner=team.owner, mailbox=mailbox, subject="Junior engineer Osaka")
    MessageFactory(
        owner=team.owner,
        mailbox=mailbox,
        subject="Address",
        addresses=[(AddressRole.FROM, "hanako.suzuki@fuji-kk.example")],
    )
    assert _found(team, team.owner, "engineer -osaka") == ["Senior engineer Tokyo"]
    assert _found(team, team.owner, '"engineer tokyo"') == ["Senior engineer Tokyo"]
    assert _found(team, team.owner, '"tokyo engineer"') == []  # a phrase keeps its order
    assert _found(team, team.owner, "engin TOK") == ["Senior engineer Tokyo"]  # prefixes
    assert _found(team, team.owner, "gineer") == []  # words match from their start
    assert _found(team, team.owner, "suzuki@fuji") == ["Address"]
    assert _found(team, team.owner, "hanako.suzuki@fuji-kk.example") == ["Address"]
    assert _found(team, team.owner, "-engineer") == []  # only exclusions: nothing to find
    assert _found(team, team.owner, '"..."') == []


@on_postgresql
def test_postgresql_search_uses_the_search_index(team: Team) -> None:
    found = messages_matching(Message.objects.all(), "営業部 interview")
    with connection.cursor() as cursor:
        # An empty test table makes any plan cheap: rule out the ones that read every row.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        sql, params = found.query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    # The index is partitioned with the table (mailboxes.search_partitions): each partition's
    # part of it is named after the partition.
    assert re.search(r"Bitmap Index Scan on mailboxes_messagesearch_\w+_vector_idx", plan), plan


def test_every_import_path_writes_the_search_entry(team: Team, mailbox: Mailbox) -> None:
    """Messages stored by the importer's batch writer are searchable at once."""
    from mailboxes.mailstore import content_hash
    from mailboxes.models import uid_digest
    from mailboxes.parsing import parse_message
    from mailboxes.storing import IncomingMessage, messages_store

    raw = (
        b"From: =?UTF-8?B?5bGx55Sw?= <yamada@sakura.example>\r\nTo: owner@sakura.example\r\n"
        b"Subject: =?UTF-8?B?6Z2i5o6l44Gu5pel56iL?=\r\nMessage-ID: <s1@sakura.example>\r\n\r\n"
        b"Kubernetes experience\r\n"
    )
    outcome = messages_store(
        mailbox=mailbox,
        batch=[
            IncomingMessage(
                uid="u1",
                uid_hash=uid_digest("u1"),
                raw=raw,
                digest=content_hash(raw),
                parsed=parse_message(raw),
                size=len(raw),
            )
        ],
    )
    assert outcome.imported == 1
    assert _found(team, team.owner, "面接 kube") == ["面接の日程"]
    assert _found(team, team.owner, "山田") == ["面接の日程"]
    # The importer builds the entry from what it holds; a rebuild from the database agrees.
    entry = MessageSearch.objects.get(message_id=outcome.message_pks[0])
    message_search_index(message_ids=outcome.message_pks)
    rebuilt = MessageSearch.objects.get(message_id=outcome.message_pks[0])
    assert (rebuilt.document, rebuilt.vector, rebuilt.sort_at) == (
        entry.document,
        entry.vector,
        entry.sort_at,
    )


def test_postgresql_keeps_the_lexemes_built_in_python(postgresql_cursor: Any) -> None:
    """to_tsvector('simple') only splits the search text at its spaces: the lexemes the
    database stores are exactly the ones the query side builds, in every script."""
    text = (
        "Re: 【至急】第二営業部長 ｶﾀｶﾅ ＡＢＣ株式会社 Café Straße O'Brien x1 0x7f 1e5 3.14 "
        "taro.yamada+jobs@example.co.jp https://example.jp/a_b?c=d 한국어 中文 Ⅲ ① ～"
    )
    document = document_of([text])
    postgresql_cursor.execute("SELECT tsvector_to_array(to_tsvector('simple', %s))", [document])
    stored = set(postgresql_cursor.fetchone()[0])
    assert stored == set(document.split())


def test_many_matches_newest_first_counted_past_the_next_page(team: Team, mailbox: Mailbox) -> None:
    now = timezone.now()
    for n in range(60):
        MessageFactory(
            owner=team.owner,
            mailbox=mailbox,
            subject=f"Kubernetes role {n}",
            sort_at=now - timedelta(minutes=n),
        )
    client = team.client_for(team.owner)
    first = client.get(reverse("mail:search"), {"q": "kubernetes"})
    assert [m.subject for m in first.context["page"]][:2] == [
        "Kubernetes role 0",
        "Kubernetes role 1",
    ]
    assert "More than 25 messages match" in first.content.decode()
    assert first.context["page"].has_next() and not first.context["page"].has_previous()
    last = client.get(reverse("mail:search"), {"q": "kubernetes", "page": "3"})
    assert [m.subject for m in last.context["page"]] == [
        f"Kubernetes role {n}" for n in range(50, 60)
    ]
    assert "60 messages match" in last.content.decode()
    assert last.context["page"].has_previous() and not last.context["page"].has_next()
    beyond = client.get(reverse("mail:search"), {"q": "kubernetes", "page": "9"})
    assert beyond.status_code == 200 and list(beyond.context["page"]) == []
