"""Committing the import's batches on a second thread, while the next batch is fetched.

A poll's work per batch has two halves that can overlap: fetching and parsing messages (this
process's CPU, and the POP3 server's) and committing them (mostly the database's time: on
PostgreSQL the search indexes alone cost about 1.5 ms a message). ``BackgroundCommitter`` runs
the commits on one thread with its own database connection, strictly one after another and in
order, so batch k commits while batch k+1 is fetched; at most one batch waits. On two cores
this takes a 10,000-message first import from about the sum of the two halves to about the
larger one (bench/ingest.py).

What the importer relies on: ``submit`` returns once the previous batch is committed (or
raises what its commit raised), and leaving the ``with`` block, by any exit, waits for the
last commit and closes the thread's connection. So nothing is committed after the poll ends,
its lease is released, or its deletions are decided. A caller inside a transaction commits
on its own thread instead: a second connection could not see the caller's uncommitted rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Generic, TypeVar

from django.db import connections, transaction
from django.utils import translation

logger = logging.getLogger(__name__)

Item = TypeVar("Item")


class BackgroundCommitter(Generic[Item]):
    """Run ``commit(batch) -> failed count`` for each submitted batch, one at a time, in order.

    ``committed(batch, failed)`` runs on the caller's thread once a batch's commit is done;
    ``failed`` adds up the counts.
    """

    def __init__(
        self,
        commit: Callable[[Sequence[Item]], int],
        committed: Callable[[Sequence[Item], int], None],
    ) -> None:
        self._commit = commit
        self._committed = committed
        self._in_flight: tuple[Sequence[Item], Future[int]] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._language: str | None = None
        self.failed = 0

    def __enter__(self) -> BackgroundCommitter[Item]:
        # The active language is per thread (the poll task writes in the owner's): carry it over.
        self._language = translation.get_language()
        if not transaction.get_connection().in_atomic_block:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit")
        return self

    def submit(self, batch: Sequence[Item]) -> None:
        """Wait for the previous batch's commit, then start committing ``batch``."""
        self._wait()
        if not batch:
            return
        if self._executor is None:
            self._done(batch, self._commit(batch))
            return
        self._in_flight = (batch, self._executor.submit(self._commit_in_language, batch))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        executor, self._executor = self._executor, None
        try:
            if exc is None:
                self._wait()
            elif self._in_flight is not None:
                # Leaving with an error already: let the commit end, and keep that error.
                batch, future = self._in_flight
                self._in_flight = None
                try:
                    self._done(batch, future.result())
                except Exception:
                    logger.exception("a batch commit failed while the poll was failing too")
        finally:
            if executor is not None:
                # Django opens one connection per thread; this thread's must not outlive it.
                executor.submit(connections.close_all).result()
                executor.shutdown(wait=True)

    def _commit_in_language(self, batch: Sequence[Item]) -> int:
        with translation.override(self._language):
            return self._commit(batch)

    def _wait(self) -> None:
        if self._in_flight is not None:
            batch, future = self._in_flight
            self._in_flight = None
            self._done(batch, future.result())

    def _done(self, batch: Sequence[Item], failed: int) -> None:
        self.failed += failed
        self._committed(batch, failed)
