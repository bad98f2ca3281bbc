"""The scheduler's tasks have a queue of their own, so they never wait behind queued polls.

- Routing: every beat task goes to the scheduler queue, the long tasks (polls, purges) to the
  poll queue; both queues are declared, so a worker started without -Q consumes both.
- With real workers on the broker this run uses (Redis in CI, the filesystem transport on the
  embedded default): a `make run`-style worker (both queues) runs a scheduler-queue task; a
  worker consuming only the scheduler queue (production's `scheduler-worker`) runs it while a
  poll is stuck and polls wait queued behind it; and a single worker on both queues takes the
  scheduler's task before the queued polls, right after the poll it is running.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from mailboxes.models import Mailbox, Security
from mailboxes.tasks import enqueue_due_polls, poll_mailbox
from recruitmail.celery import app as celery_app
from recruitmail.metrics import queue_depth
from tests.conftest import Team
from tests.mailboxes.factories import MailboxFactory
from tests.peers.celery_worker import CeleryWorkerFactory
from tests.peers.faultpop3 import FaultPop3Server

POLLS = settings.TASK_QUEUE_POLLS
SCHEDULER = settings.TASK_QUEUE_SCHEDULER
# How long the stuck poll holds its worker: long enough for the scheduler's task to be served
# (or not) while it runs, short enough for the worker's warm shutdown at the end of the test.
STALL_SECONDS = 12.0


def _queue_of(task_name: str, options: dict[str, Any] | None = None) -> str:
    """The queue Celery publishes ``task_name`` to, with these apply_async options."""
    return str(celery_app.amqp.router.route(dict(options or {}), task_name)["queue"].name)


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


# -- Routing ---------------------------------------------------------------------------------


def test_the_queues_are_two_and_both_declared() -> None:
    assert POLLS != SCHEDULER
    assert celery_app.conf.task_default_queue == POLLS
    # Declared: a worker without -Q consumes both, the filesystem broker binds both.
    assert sorted(celery_app.amqp.queues.consume_from) == sorted([POLLS, SCHEDULER])


def test_every_beat_task_goes_to_the_scheduler_queue_not_behind_the_polls() -> None:
    """Routing a beat task to the poll queue again would let it expire behind queued polls
    (its expiry is one tick) and stop scheduling exactly when the workers are overloaded."""
    schedule: dict[str, dict[str, Any]] = settings.CELERY_BEAT_SCHEDULE
    assert {entry["task"] for entry in schedule.values()} >= {
        "mailboxes.enqueue_due_polls",
        "mailboxes.enqueue_retention_purges",
    }
    for name, entry in schedule.items():
        # As beat sends it: the entry's own options could name a queue too.
        assert _queue_of(entry["task"], entry.get("options")) == SCHEDULER, name
    assert _queue_of(enqueue_due_polls.name) == SCHEDULER  # .delay() from anywhere else


@pytest.mark.parametrize("task_name", ["mailboxes.poll_mailbox", "mailboxes.purge_expired_mail"])
def test_long_tasks_go_to_the_poll_queue_never_to_the_scheduler_queue(task_name: str) -> None:
    """A poll or a purge (minutes each) on the scheduler queue would hold up its worker."""
    assert task_name in celery_app.tasks
    assert _queue_of(task_name) == POLLS


# -- Real workers ----------------------------------------------------------------------------


@pytest.fixture
def stuck_mailbox(team: Team, fault_pop3: FaultPop3Server) -> Mailbox:
    """A mailbox whose server says nothing for STALL_SECONDS before its greeting: a poll of it
    holds its worker process that long. Not due, so the scheduler leaves it alone."""
    fault_pop3.faults.stall_at, fault_pop3.faults.stall_seconds = "GREETING", STALL_SECONDS
    mailbox: Mailbox = MailboxFactory(
        owner=team.owner,
        pop3_host=fault_pop3.host,
        pop3_port=fault_pop3.port,
        pop3_security=Security.NONE,
        pop3_username=fault_pop3.username,
        password=fault_pop3.password,
        email_address="owner@sakura.example",
        next_poll_at=timezone.now() + timedelta(hours=1),
    )
    return mailbox


@pytest.fixture
def due_mailbox(team: Team) -> Mailbox:
    """A mailbox of another user, due: the scheduler's task claims it (pushes its next poll
    time past the lease) the moment it runs, which is what the tests watch for."""
    mailbox: Mailbox = MailboxFactory(
        owner=team.teammate, next_poll_at=timezone.now() - timedelta(seconds=5)
    )
    return mailbox


def _received(log_path: Path) -> list[str]:
    """The names of the tasks a worker took, in order ("Task <name>[<id>] received")."""
    return re.findall(r"Task (\S+)\[[^\]]+\] received", log_path.read_text(errors="replace"))


def _claimed(mailbox: Mailbox, since: datetime) -> bool:
    next_poll_at = Mailbox.objects.get(pk=mailbox.pk).next_poll_at
    return next_poll_at is not None and next_poll_at > since


def _back_up_the_poll_queue(stuck_mailbox: Mailbox, *, queued: int) -> None:
    """One poll of the stuck mailbox running in the worker, ``queued`` more waiting behind it
    in the broker (the worker takes one task at a time: prefetch 1, acks late)."""
    poll_mailbox.delay(stuck_mailbox.pk)
    assert _wait_for(lambda: queue_depth(celery_app, POLLS) == 0, timeout=20), "no poll taken"
    for _ in range(queued):
        poll_mailbox.delay(stuck_mailbox.pk)
    assert _wait_for(lambda: queue_depth(celery_app, POLLS) == queued, timeout=10)


@pytest.mark.django_db(transaction=True)
@pytest.mark.peers
def test_a_make_run_worker_consumes_the_scheduler_queue(
    due_mailbox: Mailbox, celery_worker_factory: CeleryWorkerFactory
) -> None:
    """The embedded setup's one worker (Procfile.dev: both queues) runs the beat task published
    to the scheduler queue, on this run's broker: the filesystem broker binds that queue too."""
    celery_worker_factory()  # -Q celery,scheduler, as Procfile.dev
    started = timezone.now()
    enqueue_due_polls.delay()
    assert _wait_for(lambda: _claimed(due_mailbox, started), timeout=30)


@pytest.mark.django_db(transaction=True)
@pytest.mark.peers
def test_the_scheduler_worker_is_served_while_the_poll_queue_is_backed_up(
    stuck_mailbox: Mailbox,
    due_mailbox: Mailbox,
    celery_worker_factory: CeleryWorkerFactory,
    tmp_path: Path,
) -> None:
    """Production's layout: poll workers and a small worker consuming only the scheduler queue.
    While every poll worker is busy and polls wait queued, the scheduler's task still runs at
    once. What this shows: its queue and its worker are separate from the polls'. It does not
    measure lag under a real overload (bench/scale.py does that)."""
    celery_worker_factory(queues=f"{POLLS},{SCHEDULER}", name="poll-worker")
    celery_worker_factory(queues=SCHEDULER, name="scheduler-worker")
    _back_up_the_poll_queue(stuck_mailbox, queued=3)

    started = timezone.now()
    enqueue_due_polls.delay()
    assert _wait_for(lambda: _claimed(due_mailbox, started), timeout=STALL_SECONDS / 2)
    # Served while the stuck poll still runs and every queued poll still waits, with the
    # poll it enqueued (after its commit) for the due mailbox behind them.
    assert _wait_for(lambda: queue_depth(celery_app, POLLS) == 4, timeout=5)
    assert not stuck_mailbox.poll_reports.exclude(finished_at=None).exists()
    assert queue_depth(celery_app, SCHEDULER) == 0
    assert _received(tmp_path / "poll-worker.log") == [poll_mailbox.name]
    assert _received(tmp_path / "scheduler-worker.log") == [enqueue_due_polls.name]


@pytest.mark.django_db(transaction=True)
@pytest.mark.peers
def test_one_worker_on_both_queues_takes_the_scheduler_task_before_the_queued_polls(
    stuck_mailbox: Mailbox,
    due_mailbox: Mailbox,
    celery_worker_factory: CeleryWorkerFactory,
    tmp_path: Path,
) -> None:
    """`make run`'s single worker, busy: the scheduler's task waits for the poll being run
    (nothing else is free to take it: why production has a worker of its own for it), but
    not behind the polls queued before it, because a worker takes from its queues in turn.
    On one shared queue it would wait for all of them."""
    celery_worker_factory()  # -Q celery,scheduler, as Procfile.dev
    _back_up_the_poll_queue(stuck_mailbox, queued=3)

    started = timezone.now()
    enqueue_due_polls.delay()
    assert _wait_for(lambda: _claimed(due_mailbox, started), timeout=STALL_SECONDS + 20)
    # The worker finished the stuck poll first, then took the scheduler's task ahead of the
    # three polls queued before it.
    assert _received(tmp_path / "worker.log")[:2] == [poll_mailbox.name, enqueue_due_polls.name]
