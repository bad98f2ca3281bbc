"""The search entries' table on PostgreSQL, partitioned by half-year of ``sort_at``.

Why: a search shows the newest matches first. Unpartitioned, PostgreSQL finds every match of a
word through the GIN index, reads each one's heap row for its ``sort_at`` and sorts them all
before the first page can leave: a word in 1 % of a million messages is 10,000 heap pages for
a page of 100 rows. Range partitions on ``sort_at`` let it read the partitions newest first,
each through its own GIN index and sorted on its own, and stop as soon as a page is full
(an "ordered Append"): the same word costs the newest half-year's matches only, and a rare word
still one small index probe per partition.

The layout (no default partition: it would stop PostgreSQL from ordering the partitions):

- ``mailboxes_messagesearch_before``: everything older than the first half-year;
- one partition per half-year, ``mailboxes_messagesearch_2026h2`` (July to December, UTC);
- ``mailboxes_messagesearch_after``: from the end of the last half-year on. A message's
  ``sort_at`` is never more than two days ahead (``storing.MAX_FUTURE_SKEW``), so this one stays
  empty while ``search_partitions_extend`` runs (the scheduler does, daily); if it does not, new
  entries land here, searches stay right and only get slower.

``after`` alone carries a b-tree on (sort_at, message_id), newest first. It is what makes the
planner consider the ordered Append at all: PostgreSQL only builds one for an ordering that
some partition can deliver by itself, and then sorts the partitions that cannot (their GIN
matches). On every partition the b-tree would be worse: PostgreSQL would walk each one newest
first, testing every entry for the words. ``tests/mailboxes/test_search_partitions.py`` checks
the plan, so a PostgreSQL upgrade that plans it differently fails a test instead of silently
slowing search.

Uniqueness: the primary key is (message_id, sort_at), as a partitioned table's must include
its partition key; one entry per message is kept by the writers (``search_index``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connections, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

logger = logging.getLogger(__name__)

TABLE = "mailboxes_messagesearch"
BEFORE = f"{TABLE}_before"
AFTER = f"{TABLE}_after"
AFTER_INDEX = "messagesearch_after_newest"
GIN_INDEX = "messagesearch_vector_gin"
# Half-years of partitions behind the current one when the table is first partitioned (older
# mail shares the "before" partition), and ahead of the current one at all times.
HALF_YEARS_BEHIND = 6
HALF_YEARS_AHEAD = 1
# How long the extension waits for searches and imports to release the table.
LOCK_TIMEOUT = "5s"
_HALF_YEAR_NAME = re.compile(rf"^{TABLE}_(\d{{4}})h([12])$")


@dataclass(frozen=True, order=True)
class HalfYear:
    year: int
    half: int  # 1: January to June, 2: July to December

    @classmethod
    def of(cls, moment: datetime) -> HalfYear:
        moment = moment.astimezone(UTC)
        return cls(moment.year, 1 if moment.month <= 6 else 2)

    def shifted(self, halves: int) -> HalfYear:
        index = self.year * 2 + (self.half - 1) + halves
        return HalfYear(index // 2, index % 2 + 1)

    @property
    def start(self) -> datetime:
        return datetime(self.year, 1 if self.half == 1 else 7, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.shifted(1).start

    @property
    def table(self) -> str:
        return f"{TABLE}_{self.year}h{self.half}"


def _create_half_year(cursor: CursorWrapper, half_year: HalfYear) -> None:
    cursor.execute(
        f"CREATE TABLE {half_year.table} PARTITION OF {TABLE} FOR VALUES FROM (%s) TO (%s)",
        [half_year.start, half_year.end],
    )


def _create_after(cursor: CursorWrapper, horizon: datetime) -> None:
    cursor.execute(
        f"CREATE TABLE {AFTER} PARTITION OF {TABLE} FOR VALUES FROM (%s) TO (MAXVALUE)",
        [horizon],
    )
    cursor.execute(f"CREATE INDEX {AFTER_INDEX} ON {AFTER} (sort_at DESC, message_id DESC)")


def _index_and_constrain(cursor: CursorWrapper) -> None:
    """The GIN index and the message foreign key, once the entries are in (faster than
    keeping them up to date row by row, and deferred checks would make PostgreSQL refuse
    the index in the same transaction)."""
    cursor.execute(f"CREATE INDEX {GIN_INDEX} ON {TABLE} USING gin (vector)")
    cursor.execute(
        f"ALTER TABLE {TABLE} ADD CONSTRAINT messagesearch_message_fk FOREIGN KEY (message_id) "
        "REFERENCES mailboxes_message (id) DEFERRABLE INITIALLY DEFERRED"
    )


def search_table_partition(*, using: str = "default", now: datetime | None = None) -> None:
    """Turn the plain search-entry table into the partitioned one, keeping every entry
    (migration ``0006_partition_message_search``). PostgreSQL only."""
    current = HalfYear.of(now or timezone.now())
    first = current.shifted(-HALF_YEARS_BEHIND)
    last = current.shifted(HALF_YEARS_AHEAD)
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {TABLE}_unpartitioned")
        cursor.execute(f"ALTER INDEX {GIN_INDEX} RENAME TO {GIN_INDEX}_unpartitioned")
        cursor.execute(
            f"""
            CREATE TABLE {TABLE} (
                message_id bigint NOT NULL,
                document text NOT NULL,
                vector tsvector,
                sort_at timestamp with time zone NOT NULL,
                CONSTRAINT messagesearch_message_sort_at_pkey PRIMARY KEY (message_id, sort_at)
            ) PARTITION BY RANGE (sort_at)
            """
        )
        cursor.execute(
            f"CREATE TABLE {BEFORE} PARTITION OF {TABLE} FOR VALUES FROM (MINVALUE) TO (%s)",
            [first.start],
        )
        half_year = first
        while half_year <= last:
            _create_half_year(cursor, half_year)
            half_year = half_year.shifted(1)
        _create_after(cursor, last.end)
        columns = "message_id, document, vector, sort_at"
        cursor.execute(f"INSERT INTO {TABLE} SELECT {columns} FROM {TABLE}_unpartitioned")  # noqa: S608
        cursor.execute(f"DROP TABLE {TABLE}_unpartitioned")
        _index_and_constrain(cursor)
        cursor.execute(f"ANALYZE {TABLE}")


def search_table_unpartition(*, using: str = "default") -> None:
    """The reverse of ``search_table_partition`` (the migration's way back)."""
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {TABLE}_partitioned")
        cursor.execute(f"ALTER INDEX {GIN_INDEX} RENAME TO {GIN_INDEX}_partitioned")
        cursor.execute(
            f"""
            CREATE TABLE {TABLE} (
                message_id bigint NOT NULL CONSTRAINT {TABLE}_pkey PRIMARY KEY,
                document text NOT NULL,
                vector tsvector,
                sort_at timestamp with time zone NOT NULL
            )
            """
        )
        cursor.execute(f"INSERT INTO {TABLE} SELECT * FROM {TABLE}_partitioned")  # noqa: S608
        cursor.execute(f"DROP TABLE {TABLE}_partitioned")
        _index_and_constrain(cursor)


def search_partitions(*, using: str = "default") -> list[str]:
    """The names of the search table's partitions (none where it is not partitioned)."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(%s) ORDER BY c.relname",
            [TABLE],
        )
        return [name for (name,) in cursor.fetchall()]


def search_table_analyze(*, using: str = "default") -> None:
    """Fresh planner statistics for the search table as a whole. Autovacuum analyzes each
    partition as it fills, but never a partitioned table itself (PostgreSQL's documentation
    asks for a manual ANALYZE of it): without, its joins to the messages are estimated blind."""
    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {TABLE}")


def search_partitions_extend(*, using: str = "default", now: datetime | None = None) -> int:
    """Add the half-year partitions that ``now`` needs ahead (HALF_YEARS_AHEAD after the
    current one), taking their range from ``after``; return how many were added.

    Nothing to do (and nothing locked) on most days. When there is, ``after`` is detached,
    the new half-years and a new ``after`` are created, and whatever the old one held (nothing,
    unless this has not run for months) is moved into them, in one transaction that holds the
    table exclusively for milliseconds; it gives up after LOCK_TIMEOUT if searches or imports
    keep the table busy, and the next run tries again.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return 0
    names = search_partitions(using=using)
    if AFTER not in names:
        return 0  # not partitioned (migrated back) or not yet migrated
    half_years = sorted(
        HalfYear(int(match[1]), int(match[2]))
        for match in (_HALF_YEAR_NAME.match(name) for name in names)
        if match
    )
    current = HalfYear.of(now or timezone.now())
    wanted = current.shifted(HALF_YEARS_AHEAD)
    if half_years and half_years[-1] >= wanted:
        return 0
    start = half_years[-1].shifted(1) if half_years else current
    added = []
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        # The old "after" is dropped below, which PostgreSQL refuses while foreign-key checks
        # of rows written to it earlier in the same transaction are still deferred.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {AFTER}")
        cursor.execute(f"ALTER TABLE {AFTER} RENAME TO {AFTER}_old")
        cursor.execute(f"DROP INDEX {AFTER_INDEX}")
        half_year = start
        while half_year <= wanted:
            _create_half_year(cursor, half_year)
            added.append(half_year.table)
            half_year = half_year.shifted(1)
        _create_after(cursor, wanted.end)
        cursor.execute(
            f"WITH moved AS (INSERT INTO {TABLE} SELECT * FROM {AFTER}_old RETURNING 1) "  # noqa: S608
            "SELECT count(*) FROM moved"
        )
        (moved,) = cursor.fetchone()
        cursor.execute(f"DROP TABLE {AFTER}_old")
    if moved:
        logger.warning(
            "search partitions: %d entries were in %s (the extension had not run in time)",
            moved,
            AFTER,
        )
    logger.info("search partitions: added %s", ", ".join(added))
    return len(added)
