"""A real Celery worker process for tests that cross the broker (Redis in CI)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from recruitmail.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    settings = connection.settings_dict
    if settings["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings['NAME']}"
    auth = settings["USER"] + (f":{settings['PASSWORD']}" if settings["PASSWORD"] else "")
    return f"postgres://{auth}@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/{settings['NAME']}"


def _wait_until_ready(worker: subprocess.Popen, log_path: Path, timeout: float = 60.0) -> None:  # type: ignore[type-arg]
    """Return once the worker says it is ready: it has declared its queue and its binding (on
    the filesystem broker, the exchange table that routes a published task to the queue), so
    nothing the test publishes next can be routed before there is anyone to route it to."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if " ready." in log_path.read_text(errors="replace"):
            return
        if worker.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"the Celery worker did not start:\n{log_path.read_text()[-3000:]}")


# What `make run` (Procfile.dev) and the production `worker` service consume: the poll queue
# and, as a safety net, the scheduler's (settings.TASK_QUEUE_*).
BOTH_QUEUES = f"{settings.TASK_QUEUE_POLLS},{settings.TASK_QUEUE_SCHEDULER}"

CeleryWorkerFactory = Callable[..., subprocess.Popen]  # type: ignore[type-arg]


@pytest.fixture
def celery_worker_factory(mail_settings, tmp_path: Path) -> Iterator[CeleryWorkerFactory]:  # type: ignore[no-untyped-def]
    """``start(queues="celery,scheduler", name="worker")``: a real `celery worker` process
    consuming ``queues`` (its `-Q`), on the broker this test run uses (Redis in CI, the
    filesystem transport on the embedded default), on the test database; its log is
    ``tmp_path / f"{name}.log"``. Every worker started is stopped at the end of the test."""
    celery_app.control.purge()  # nothing left over from an earlier run, in any queue
    env = {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": celery_app.conf.broker_url,
        "CELERY_BROKER_DIR": str(settings.CELERY_BROKER_DIR),
        "MAIL_HOSTS_ALLOW_LOOPBACK": "true",
        "MAIL_CA_FILE": mail_settings.MAIL_CA_FILE,
        "MAIL_STORE_DIR": mail_settings.MEDIA_ROOT,
    }
    started: list[tuple[subprocess.Popen, Path]] = []  # type: ignore[type-arg]

    def start(*, queues: str = BOTH_QUEUES, name: str = "worker") -> subprocess.Popen:  # type: ignore[type-arg]
        log_path = tmp_path / f"{name}.log"
        with log_path.open("w") as log:
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "recruitmail",
                    "worker",
                    "-Q",
                    queues,
                    "--hostname",
                    f"{name}@%h",
                    "--pool=solo",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "--loglevel=INFO",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append((worker, log_path))
        _wait_until_ready(worker, log_path)
        return worker

    try:
        yield start
    finally:
        # Emptied first: a solo worker in warm shutdown finishes its task and may still take
        # one more that is waiting, which could be another slow poll.
        celery_app.control.purge()
        for worker, _log_path in started:
            worker.terminate()
        stuck = []
        for worker, log_path in started:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
                stuck.append(log_path.name)
            print(f"--- {log_path.name} ---\n{log_path.read_text()[-3000:]}")
        assert not stuck, f"workers that did not stop within 30 s of SIGTERM: {stuck}"


@pytest.fixture
def celery_worker_process(celery_worker_factory: CeleryWorkerFactory) -> subprocess.Popen:  # type: ignore[type-arg]
    """One worker as `make run` starts it: both queues, polls and the scheduler's tasks."""
    return celery_worker_factory()
