"""Scheduling through a real Celery worker on Redis: the beat task and "Fetch now"."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from mailboxes.models import Mailbox, Message
from mailboxes.tasks import enqueue_due_polls
from recruitmail.celery import app as celery_app
from tests.conftest import Team
from tests.mailboxes.mail import make_message
from tests.peers.fixtures import Pop3Account

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    settings = connection.settings_dict
    if settings["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings['NAME']}"
    auth = settings["USER"] + (f":{settings['PASSWORD']}" if settings["PASSWORD"] else "")
    return f"postgres://{auth}@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/{settings['NAME']}"


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
            yield worker
        finally:
            worker.terminate()
            worker.wait(timeout=20)
            print(log_path.read_text()[-3000:])


def _wait_for(condition, timeout: float = 45.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_beat_task_enqueues_due_mailboxes_and_a_worker_imports(
    team: Team,
    pop3_account: Pop3Account,
    dovecot_mailbox: Mailbox,
    celery_worker_process: subprocess.Popen,
) -> None:
    pop3_account.deliver(make_message(subject="via the scheduler"))
    Mailbox.objects.filter(pk=dovecot_mailbox.pk).update(
        next_poll_at=timezone.now() - timedelta(seconds=1)
    )
    assert enqueue_due_polls() == 1
    assert enqueue_due_polls() == 0  # already enqueued: not twice
    assert _wait_for(lambda: Message.objects.filter(subject="via the scheduler").exists())
    dovecot_mailbox.refresh_from_db()
    assert _wait_for(lambda: Mailbox.objects.get(pk=dovecot_mailbox.pk).last_poll_at is not None)
    assert Mailbox.objects.get(pk=dovecot_mailbox.pk).next_poll_at > timezone.now()


def test_fetch_now_enqueues_a_poll(
    team: Team,
    pop3_account: Pop3Account,
    dovecot_mailbox: Mailbox,
    celery_worker_process: subprocess.Popen,
) -> None:
    pop3_account.deliver(make_message(subject="fetched now"))
    response = team.client_for(team.owner).post(
        reverse("mailboxes:fetch_now", args=[dovecot_mailbox.pk])
    )
    assert response.status_code == 302
    assert _wait_for(lambda: Message.objects.filter(subject="fetched now").exists())
    detail = team.client_for(team.owner).get(reverse("mailboxes:detail", args=[dovecot_mailbox.pk]))
    assert _wait_for(lambda: dovecot_mailbox.poll_reports.exclude(finished_at=None).exists())
    detail = team.client_for(team.owner).get(reverse("mailboxes:detail", args=[dovecot_mailbox.pk]))
    assert "Imported" in detail.content.decode()
