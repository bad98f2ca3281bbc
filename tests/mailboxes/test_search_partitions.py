"""The search entries partitioned by half-year of sort_at (mailboxes.search_partitions).

- On both databases: a search orders its matches newest first across any spread of dates
  (before the first half-year, inside several, after the last), pages included, and
  re-indexing a message leaves it one entry, even when its sort_at moved to another partition.
- On PostgreSQL: the layout the migration creates; the plan that makes it worth having (the
  partitions read newest first, older ones never executed once a page is full); extending the
  layout as the calendar moves on, moving whatever landed in ``after`` and doing nothing when
  there is nothing to do.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from mailboxes.models import Mailbox, Message, MessageSearch
from mailboxes.search import messages_matching
from mailboxes.search_index import message_search_index
from mailboxes.search_partitions import (
    AFTER,
    AFTER_INDEX,
    BEFORE,
    HALF_YEARS_AHEAD,
    HALF_YEARS_BEHIND,
    HalfYear,
    search_partitions,
    search_partitions_extend,
)
from tests.conftest import Team
from tests.mailboxes.factories import MailboxFactory, MessageFactory

pytestmark = pytest.mark.django_db
# Partitions are PostgreSQL's (tests/peers/postgresql.py).
on_postgresql = pytest.mark.postgresql_schema


@pytest.fixture
def mailbox(team: Team) -> Mailbox:
    return MailboxFactory(owner=team.owner, email_address="owner@sakura.example")


def _message(team: Team, mailbox: Mailbox, subject: str, at: datetime) -> Message:
    return MessageFactory(
        owner=team.owner, mailbox=mailbox, subject=subject, body_text="kubernetes", sort_at=at
    )


def _dates_across_partitions() -> list[datetime]:
    """Newest first: in ``after``, in this half-year, two half-years back, in ``before``."""
    now = datetime.now(UTC)
    return [
        now + timedelta(days=2000),
        now,
        now - timedelta(days=400),
        now - timedelta(days=365 * 20),
    ]


def test_matches_come_newest_first_across_partitions(team: Team, mailbox: Mailbox) -> None:
    dates = _dates_across_partitions()
    # Created out of order, so neither the primary key nor insertion order gives the answer.
    for index in (2, 0, 3, 1):
        _message(team, mailbox, f"message {index}", dates[index])
    found = messages_matching(Message.objects.all(), "kubernetes")
    assert [m.subject for m in found] == [f"message {i}" for i in range(4)]
    assert [m.subject for m in found[1:3]] == ["message 1", "message 2"]  # a later page
    assert [m.subject for m in messages_matching(Message.objects.all(), "nothing")] == []


def test_reindexing_a_message_keeps_one_entry(team: Team, mailbox: Mailbox) -> None:
    message = _message(team, mailbox, "moved", datetime.now(UTC))
    # Its sort_at moves twenty years back: the entry moves to another partition, not doubled.
    Message.objects.filter(pk=message.pk).update(sort_at=datetime.now(UTC) - timedelta(days=7300))
    message_search_index(message_ids=[message.pk])
    message_search_index(message_ids=[message.pk])
    assert MessageSearch.objects.filter(message_id=message.pk).count() == 1
    assert [m.pk for m in messages_matching(Message.objects.all(), "moved")] == [message.pk]


@on_postgresql
def test_the_migration_lays_out_half_years_around_today() -> None:
    current = HalfYear.of(datetime.now(UTC))
    expected = {BEFORE, AFTER} | {
        current.shifted(step).table for step in range(-HALF_YEARS_BEHIND, HALF_YEARS_AHEAD + 1)
    }
    assert set(search_partitions()) == expected
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_indexes WHERE indexname = %s", [AFTER_INDEX])
        assert cursor.fetchall() == [(AFTER,)]  # on "after" alone (see the module's docstring)


@on_postgresql
def test_a_full_page_never_reads_the_older_partitions(team: Team, mailbox: Mailbox) -> None:
    """The plan the partitions are for: newest partition first, each sorted on its own, and
    the Limit stops the Append before the older ones run."""
    message = _message(team, mailbox, "many", datetime.now(UTC))
    now = datetime.now(UTC)
    with connection.cursor() as cursor:
        # Entries of one message at many times (the key is (message, sort_at)): enough rows in
        # two half-years for the planner to see them as they are.
        for start in (now - timedelta(days=1), now - timedelta(days=400)):
            cursor.execute(
                "INSERT INTO mailboxes_messagesearch (message_id, document, vector, sort_at) "
                "SELECT %s, '', to_tsvector('simple', 'kubernetes engineer ' || n), "
                "%s - n * interval '1 minute' FROM generate_series(1, 3000) n",
                [message.pk, start],
            )
        cursor.execute("ANALYZE mailboxes_messagesearch")
        cursor.execute(
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "
            "SELECT message_id, sort_at FROM mailboxes_messagesearch "
            "WHERE vector @@ 'kubernetes:*'::tsquery "
            "ORDER BY sort_at DESC, message_id DESC LIMIT 100"
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    older = HalfYear.of(now - timedelta(days=400)).table
    lines = plan.splitlines()
    assert lines[0].startswith("Limit"), plan
    assert lines[1].strip().startswith("->  Append"), plan  # not a Merge Append, not a Sort
    assert "Gather" not in plan, plan
    older_scan = next(line for line in lines if f"on {older} " in line)
    assert "never executed" in older_scan, plan


@on_postgresql
def test_extending_adds_half_years_and_moves_what_landed_in_after(
    team: Team, mailbox: Mailbox
) -> None:
    current = HalfYear.of(datetime.now(UTC))
    assert search_partitions_extend() == 0  # the migration's layout is already ahead
    horizon = current.shifted(HALF_YEARS_AHEAD + 1).start
    early = _message(team, mailbox, "early", horizon + timedelta(days=10))  # lands in "after"
    late = _message(team, mailbox, "late", horizon + timedelta(days=900))
    two_years_on = current.shifted(4).start + timedelta(days=1)

    assert search_partitions_extend(now=two_years_on) == 4
    names = set(search_partitions())
    assert {current.shifted(step).table for step in range(2, 6)} <= names
    assert AFTER in names
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT tableoid::regclass::text, message_id FROM mailboxes_messagesearch "  # noqa: S608
            f"WHERE message_id IN ({early.pk}, {late.pk}) ORDER BY message_id"
        )
        placed = cursor.fetchall()
        cursor.execute("SELECT tablename FROM pg_indexes WHERE indexname = %s", [AFTER_INDEX])
        assert cursor.fetchall() == [(AFTER,)]
    assert placed == [(HalfYear.of(early.sort_at).table, early.pk), (AFTER, late.pk)]
    assert [m.subject for m in messages_matching(Message.objects.all(), "kubernetes")] == [
        "late",
        "early",
    ]
    assert search_partitions_extend(now=two_years_on) == 0


def test_the_daily_task_runs_on_either_database() -> None:
    from mailboxes.tasks import extend_search_partitions

    # Nothing to add on a freshly migrated database (PostgreSQL), nothing at all on SQLite;
    # either way the task succeeds (and analyzes the table on PostgreSQL).
    assert extend_search_partitions() == 0
