"""Message bodies are compressed with lz4 on PostgreSQL servers that have it (migration 0007)."""

from __future__ import annotations

import pytest
from django.db import connection

from mailboxes.models import Message
from tests.conftest import Team
from tests.mailboxes.factories import MessageFactory

# Column compression is PostgreSQL's (tests/peers/postgresql.py).
pytestmark = [pytest.mark.django_db, pytest.mark.postgresql_schema]


def test_long_bodies_are_stored_with_lz4_and_read_back_whole(team: Team) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        )
        (available,) = cursor.fetchone()
    # Debian's PostgreSQL (CI's) is built with lz4: without it this test would prove nothing.
    assert available
    body = "Kubernetes experience, five years. " * 400  # 14 KB: compressed in the row
    message = MessageFactory(owner=team.owner, body_text=body, body_html=f"<p>{body}</p>")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_column_compression(body_text), pg_column_compression(body_html) "
            "FROM mailboxes_message WHERE id = %s",
            [message.pk],
        )
        assert cursor.fetchone() == ("lz4", "lz4")
    stored = Message.objects.get(pk=message.pk)
    assert (stored.body_text, stored.body_html) == (body, f"<p>{body}</p>")
