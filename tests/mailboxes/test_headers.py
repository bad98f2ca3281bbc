"""mailboxes.headers: message ids and dates (RFC 5322 sections 3.6.4 and 3.3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mailboxes.headers import parse_date, parse_message_ids


def test_message_ids_without_brackets_and_prose() -> None:
    assert parse_message_ids("<a@x> <b@y>") == ["a@x", "b@y"]
    assert parse_message_ids("a@x") == ["a@x"]
    assert parse_message_ids("Your message of Monday") == []
    assert parse_message_ids(None) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "Mon, 01 Jul 2024 10:00:00 +0900",
            datetime(2024, 7, 1, 10, tzinfo=timezone(timedelta(hours=9))),
        ),
        ("1 Jul 2024 10:00:00", datetime(2024, 7, 1, 10, tzinfo=UTC)),
        ("Mon, 01 Jul 2024 10:00:00 -0000", datetime(2024, 7, 1, 10, tzinfo=UTC)),
    ],
)
def test_dates_are_aware(raw: str, expected: datetime) -> None:
    date, defect = parse_date(raw)

    assert defect is None
    assert date is not None and date.tzinfo is not None
    assert (date, date.utcoffset()) == (expected, expected.utcoffset())


@pytest.mark.parametrize("raw", ["2024/07/01 10:00", "31 Feb 2024 10:00:00 +0000", "x", ""])
def test_unreadable_dates_are_defects(raw: str) -> None:
    date, defect = parse_date(raw)

    assert date is None
    assert defect is not None and "Date" in defect
