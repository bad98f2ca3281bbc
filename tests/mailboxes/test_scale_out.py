"""Scale-out: two real Celery workers on one Redis and one database.

- A task that Redis redelivers while its first delivery is still polling (the visibility
  timeout passed) finds the lease taken and returns: the mailbox is polled once, not twice.
- The scheduler's fan-out spreads due mailboxes over both workers, each polled exactly once.
- The lease compares times on the database's clock, so a worker whose clock runs ahead does
  not take a live lease.

The workers use Redis database 13 (CI's suite uses 15), whatever broker the rest of the run
uses, with a visibility timeout of 3 s so that redelivery happens within the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import redis
from django.utils import timezone

from mailboxes.leases import lease_acquire
from mailboxes.models import Mailbox, Message, PollReport, Security
from mailboxes.tasks import enqueue_due_polls, poll_mailbox
from recruitmail.celery import app as celery_app
from tests.conftest import Team
from tests.mailboxes.conftest import mailbox_for
from tests.mailboxes.factories import MailboxFactory
from tests.mailboxes.mail import make_message
from tests.peers.celery_worker import ROOT, _database_url
from tests.peers.faultpop3 import FaultPop3Server
from tests.peers.fixtures import Pop3AccountFactory
from tests.records.factories import MembershipFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.peers]

BROKER_URL = os.environ.get("SCALE_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
VISIBILITY_TIMEOUT_SECONDS = 3
# The worker, with Redis told to redeliver unacknowledged tasks after 3 s and to look for
# them every second (kombu's defaults: 10 s, every tenth look); it consumes the queues of the
# production `worker` service: polls, and the scheduler's task that the spreading test sends.
WORKER_CODE = f"""
from recruitmail.celery import app
app.conf.broker_transport_options = {{
    "visibility_timeout": {VISIBILITY_TIMEOUT_SECONDS},
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}}
import sys
app.worker_main(["worker", "-Q", "celery,scheduler", "--pool=solo", "--without-gossip",
                 "--without-mingle", "--without-heartbeat", "--loglevel=INFO", "-n", sys.argv[1]])
"""


class Workers:
    def __init__(self, logs: list[Path]) -> None:
        self.logs = logs

    def log(self, index: int) -> str:
        return self.logs[index].read_text(errors="replace")

    def polled_by(self, index: int) -> set[int]:
        """Mailbox ids whose poll finished in worker ``index`` (its log line says so)."""
        ids = set()
        for line in self.log(index).splitlines():
            if "poll of mailbox " in line and ": on server" in line:
                ids.add(int(line.split("poll of mailbox ", 1)[1].split(":", 1)[0]))
        return ids


@pytest.fixture
def redis_broker() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(BROKER_URL)
    client.flushdb()  # database 13 is this file's alone
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def two_workers(mail_settings: Any, tmp_path: Path, redis_broker: redis.Redis) -> Iterator[Workers]:
    env = {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": BROKER_URL,
        "MAIL_HOSTS_ALLOW_LOOPBACK": "true",
        "MAIL_CA_FILE": mail_settings.MAIL_CA_FILE,
        "MAIL_STORE_DIR": mail_settings.MEDIA_ROOT,
        "POP3_TIMEOUT_SECONDS": "30",
        "LOG_LEVEL": "INFO",
    }
    logs = [tmp_path / f"worker-{index}.log" for index in range(2)]
    processes = []
    for index, log_path in enumerate(logs):
        with log_path.open("w") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-c", WORKER_CODE, f"scale-{index}@%h"],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    workers = Workers(logs)
    try:
        assert _wait_for(lambda: all("ready." in workers.log(i) for i in range(2)), 60), (
            workers.log(0)[-2000:] + workers.log(1)[-2000:]
        )
        yield workers
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=20)
        for index in range(2):
            print(f"--- worker {index} ---\n{workers.log(index)[-3000:]}")


def _wait_for(condition: Callable[[], bool], timeout: float = 45.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def _send(task: Any, *args: Any) -> None:
    """Publish ``task`` on database 13, whatever broker this test run's settings name."""
    with celery_app.connection_for_write(BROKER_URL) as connection:
        task.apply_async(args, connection=connection)


def _assert_no_overlap(reports: list[PollReport]) -> None:
    spans = sorted((r.started_at, r.finished_at) for r in reports)
    for (_, first_end), (second_start, _) in zip(spans, spans[1:], strict=False):
        assert first_end is not None and first_end <= second_start, spans


def test_a_task_redelivered_during_a_long_poll_does_not_poll_again(
    team: Team,
    fault_pop3: FaultPop3Server,
    two_workers: Workers,
) -> None:
    for number in range(2):
        fault_pop3.add_message(make_message(subject=f"slow {number}"))
    # Each RETR takes 6 s, the poll 12 s: long past the 3 s visibility timeout.
    fault_pop3.faults.stall_at, fault_pop3.faults.stall_seconds = "RETR", 6
    mailbox: Mailbox = MailboxFactory(
        owner=team.owner,
        pop3_host=fault_pop3.host,
        pop3_port=fault_pop3.port,
        pop3_security=Security.NONE,
        pop3_username=fault_pop3.username,
        password=fault_pop3.password,
        email_address="owner@sakura.example",
    )
    _send(poll_mailbox, mailbox.pk)
    # The copy Redis hands out again reaches the other worker, which finds the lease taken.
    assert _wait_for(
        lambda: any(
            f"mailbox {mailbox.pk} is being polled by another worker" in two_workers.log(i)
            for i in range(2)
        ),
        timeout=30,
    ), "Redis did not redeliver the task during the poll"
    assert _wait_for(lambda: mailbox.poll_reports.exclude(finished_at=None).exists(), 30)
    time.sleep(VISIBILITY_TIMEOUT_SECONDS + 2)  # any late copy has had its chance
    reports = list(mailbox.poll_reports.all())
    assert len(reports) >= 1
    _assert_no_overlap(reports)
    assert reports[-1].imported == 2  # the first poll, oldest last
    assert Message.objects.filter(mailbox=mailbox).count() == 2


def test_the_scheduler_spreads_due_mailboxes_over_both_workers(
    team: Team,
    pop3_account_factory: Pop3AccountFactory,
    two_workers: Workers,
) -> None:
    mailboxes = []
    for number in range(8):
        account = pop3_account_factory()
        for _ in range(3):
            account.deliver(make_message(subject=f"for mailbox {number}"))
        # One active mailbox per user (a constraint): eight recruiters.
        recruiter = MembershipFactory(organization=team.organization).user
        mailboxes.append(mailbox_for(account, recruiter))
    Mailbox.objects.filter(pk__in=[m.pk for m in mailboxes]).update(
        next_poll_at=timezone.now() - timedelta(seconds=1)
    )
    _send(enqueue_due_polls)
    ids = {m.pk for m in mailboxes}
    assert _wait_for(
        lambda: (
            PollReport.objects.filter(mailbox_id__in=ids).exclude(finished_at=None).count() == 8
        ),
        60,
    )
    first, second = two_workers.polled_by(0), two_workers.polled_by(1)
    assert first | second == ids and not first & second  # each mailbox once, by one worker
    assert len(first) >= 2 and len(second) >= 2, (first, second)
    assert Message.objects.filter(mailbox_id__in=ids).count() == 24


def test_a_worker_whose_clock_runs_ahead_does_not_take_a_live_lease(team: Team) -> None:
    mailbox: Mailbox = MailboxFactory(owner=team.owner)
    assert lease_acquire(mailbox_id=mailbox.pk, seconds=60) is not None
    ahead = timezone.now() + timedelta(hours=1)
    with mock.patch("django.utils.timezone.now", return_value=ahead):
        assert lease_acquire(mailbox_id=mailbox.pk) is None
