"""A real Celery worker process for tests that cross the broker (Redis in CI)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
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


@pytest.fixture
def celery_worker_process(mail_settings, tmp_path: Path) -> Iterator[subprocess.Popen]:  # type: ignore[no-untyped-def, type-arg]
    """A real `celery worker` process on the broker this test run uses (Redis in CI, the
    filesystem transport on the embedded default), on the test database."""
    celery_app.control.purge()  # nothing left over from an earlier run
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
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "recruitmail",
                "worker",
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
        try:
            _wait_until_ready(worker, log_path)
            yield worker
        finally:
            worker.terminate()
            worker.wait(timeout=20)
            print(log_path.read_text()[-3000:])
