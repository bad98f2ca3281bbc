"""BackgroundCommitter: batches commit on one other thread, in order, one at a time, and all of
them have ended when the ``with`` block is left, however it is left."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest
from django.db import connections, transaction
from django.utils import translation

from mailboxes.committer import BackgroundCommitter


class Recorder:
    def __init__(self, *, fail_on: int | None = None, delay: float = 0.0) -> None:
        self.fail_on = fail_on
        self.delay = delay
        self.threads: set[str] = set()
        self.batches: list[list[int]] = []
        self.running = 0
        self.most_at_once = 0
        self.done: list[tuple[list[int], int]] = []
        self.languages: list[str | None] = []

    def commit(self, batch: Sequence[int]) -> int:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        self.threads.add(threading.current_thread().name)
        self.languages.append(translation.get_language())
        time.sleep(self.delay)
        self.running -= 1
        if self.fail_on in batch:
            raise RuntimeError("the database went away")
        self.batches.append(list(batch))
        return sum(1 for item in batch if item < 0)  # negative items "fail"

    def committed(self, batch: Sequence[int], failed: int) -> None:
        self.done.append((list(batch), failed))


@pytest.mark.django_db(transaction=True)
def test_commits_in_order_one_at_a_time_on_another_thread() -> None:
    recorder = Recorder(delay=0.01)
    with (
        translation.override("ja"),
        BackgroundCommitter(recorder.commit, recorder.committed) as committer,
    ):
        for batch in ([1, 2], [], [3, -4], [5]):
            committer.submit(batch)
    assert recorder.batches == [[1, 2], [3, -4], [5]]
    assert recorder.done == [([1, 2], 0), ([3, -4], 1), ([5], 0)]
    assert committer.failed == 1
    assert recorder.most_at_once == 1
    assert recorder.threads and threading.current_thread().name not in recorder.threads
    assert recorder.languages == ["ja", "ja", "ja"]  # the caller's language, not the default


@pytest.mark.django_db(transaction=True)
def test_submit_raises_what_the_previous_commit_raised() -> None:
    recorder = Recorder(fail_on=3)
    with pytest.raises(RuntimeError, match="went away"):
        with BackgroundCommitter(recorder.commit, recorder.committed) as committer:
            committer.submit([3])
            committer.submit([4])  # waits for [3] first, which raised
    assert recorder.batches == []


@pytest.mark.django_db(transaction=True)
def test_leaving_by_an_error_still_waits_for_the_commit_in_flight() -> None:
    recorder = Recorder(delay=0.2)
    with pytest.raises(KeyError):
        with BackgroundCommitter(recorder.commit, recorder.committed) as committer:
            committer.submit([1])
            raise KeyError("the POP3 session broke")
    # Committed before the block was left, and counted.
    assert recorder.batches == [[1]] and recorder.done == [([1], 0)]


@pytest.mark.django_db(transaction=True)
def test_the_threads_database_connection_is_closed() -> None:
    opened: list[object] = []

    def commit(batch: Sequence[int]) -> int:
        connection = connections["default"]
        connection.ensure_connection()
        opened.append(connection)
        return 0

    with BackgroundCommitter(commit, lambda batch, failed: None) as committer:
        committer.submit([1])
    assert len(opened) == 1 and opened[0].connection is None  # type: ignore[attr-defined]


@pytest.mark.django_db
def test_inside_a_transaction_it_commits_on_the_callers_thread() -> None:
    # A second connection could not see the caller's uncommitted rows.
    recorder = Recorder()
    assert transaction.get_connection().in_atomic_block
    with BackgroundCommitter(recorder.commit, recorder.committed) as committer:
        committer.submit([1])
        assert recorder.done == [([1], 0)]  # already, synchronously
    assert recorder.threads == {threading.current_thread().name}
