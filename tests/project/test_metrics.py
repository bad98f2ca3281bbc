"""GET /metrics: bearer-token access, and figures read from the database and the broker."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from django.test import Client as HttpClient
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from mailboxes.importer import mailbox_poll
from mailboxes.models import ImportState, Mailbox, MailboxStatus, MessageOrigin, PollOutcome
from recruitmail import metrics
from tests.conftest import Team
from tests.mailboxes.factories import MailboxFactory, MessageFactory
from tests.peers.ports import free_ports

TOKEN = "metrics-token-" + "k" * 32


def _scrape(client: HttpClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get(reverse("metrics"), HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    assert "no-cache" in response["Cache-Control"]
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def _filesystem_broker(folder: Path, monkeypatch: Any) -> Celery:
    """A Celery app on its own filesystem broker folder: the test run's broker may be Redis,
    and a worker of another test must not take the task this test counts. (Celery prefers the
    CELERY_BROKER_URL environment variable, which CI sets, to the app's own broker: unset it.)"""
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    # Not the current app: shared tasks of later tests must keep publishing on the run's broker.
    app = Celery("metrics-test", broker="filesystem://", set_as_current=False)
    app.conf.broker_transport_options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "processed_folder": str(folder / "processed"),
        # Its exchange table too (kombu's default is "control" in the working directory).
        "control_folder": str(folder / "control"),
        "store_processed": False,
    }
    folder.mkdir(parents=True, exist_ok=True)
    return app


@pytest.mark.django_db
def test_metrics_does_not_exist_without_a_token(client: HttpClient, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    response = client.get(reverse("metrics"), HTTP_AUTHORIZATION="Bearer ")
    assert response.status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}"],
)
def test_metrics_refuses_a_missing_or_wrong_token(
    client: HttpClient, settings: Any, header: str | None
) -> None:
    settings.METRICS_TOKEN = TOKEN
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get(reverse("metrics"), **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"recruitmail_" not in response.content


@pytest.mark.django_db(transaction=True)  # a real poll, committed as a worker's would be
def test_metrics_counts_imports_failures_mailboxes_lag_and_queue(
    team: Team, client: HttpClient, settings: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    settings.METRICS_TOKEN = TOKEN
    settings.MAIL_HOSTS_ALLOW_LOOPBACK = True
    settings.POP3_TIMEOUT_SECONDS = 5
    settings.MEDIA_ROOT = str(tmp_path / "mailstore")

    # A real poll that fails: nothing listens on the mailbox's port.
    (closed_port,) = free_ports("127.0.0.1", 1)
    failing = MailboxFactory(owner=team.owner, pop3_port=closed_port)
    report = mailbox_poll(mailbox_id=failing.pk)
    assert report is not None
    assert (report.outcome, report.error_code) == (PollOutcome.ERROR, "refused")

    # A mailbox whose poll is 90 seconds late, and one in the future (not due).
    due = MailboxFactory(owner=team.teammate)
    Mailbox.objects.filter(pk=due.pk).update(next_poll_at=timezone.now() - timedelta(seconds=90))
    later = MailboxFactory(owner=team.admin)
    Mailbox.objects.filter(pk=later.pk).update(
        status=MailboxStatus.OK, next_poll_at=timezone.now() + timedelta(minutes=5)
    )
    # An inactive mailbox, long overdue: never polled, so never late.
    MailboxFactory(
        owner=team.admin, is_active=False, next_poll_at=timezone.now() - timedelta(days=1)
    )

    # Two messages imported, one left on the server as too large, one sent from the hub.
    for _ in range(2):
        MessageFactory(owner=team.teammate, mailbox=due)
    MessageFactory(owner=team.teammate, mailbox=due, import_state=ImportState.PLACEHOLDER)
    MessageFactory(owner=team.teammate, origin=MessageOrigin.HUB)

    # One poll waiting on a filesystem broker.
    broker = _filesystem_broker(tmp_path / "broker", monkeypatch)
    broker.send_task("mailboxes.poll_mailbox", args=[due.pk])
    monkeypatch.setattr(metrics, "celery_app", broker)

    figures = _scrape(client)

    assert figures[("recruitmail_messages_imported_total", (("state", "parsed"),))] == 2
    assert figures[("recruitmail_messages_imported_total", (("state", "placeholder"),))] == 1
    assert figures[("recruitmail_messages_imported_total", (("state", "unparsed"),))] == 0
    assert figures[("recruitmail_polls_total", (("outcome", "error"),))] == 1
    assert figures[("recruitmail_polls_total", (("outcome", "ok"),))] == 0
    assert figures[("recruitmail_polls_failed_total", (("reason", "refused"),))] == 1
    assert [key for key in figures if key[0] == "recruitmail_polls_failed_total"] == [
        ("recruitmail_polls_failed_total", (("reason", "refused"),))
    ]
    mailboxes = {
        labels: value
        for (name, labels), value in figures.items()
        if name == "recruitmail_mailboxes"
    }
    assert mailboxes[(("active", "true"), ("status", "error"))] == 1
    assert mailboxes[(("active", "true"), ("status", "new"))] == 1
    assert mailboxes[(("active", "true"), ("status", "ok"))] == 1
    assert mailboxes[(("active", "false"), ("status", "new"))] == 1
    assert sum(mailboxes.values()) == 4
    lag = figures[("recruitmail_oldest_due_poll_lag_seconds", ())]
    assert 90 <= lag < 150
    assert figures[("recruitmail_broker_up", ())] == 1
    assert figures[("recruitmail_queue_depth", (("queue", "celery"),))] == 1


def test_oldest_due_lag_is_zero_when_nothing_is_due(
    team: Team, client: HttpClient, settings: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    settings.METRICS_TOKEN = TOKEN
    MailboxFactory(owner=team.owner, next_poll_at=timezone.now() + timedelta(minutes=1))
    monkeypatch.setattr(metrics, "celery_app", _filesystem_broker(tmp_path / "broker", monkeypatch))
    figures = _scrape(client)
    assert figures[("recruitmail_oldest_due_poll_lag_seconds", ())] == 0
    assert figures[("recruitmail_queue_depth", (("queue", "celery"),))] == 0


def test_queue_depth_is_reported_for_the_poll_and_the_scheduler_queue(
    team: Team, client: HttpClient, settings: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """A scheduler queue that grows means no worker consumes it: each queue has its figure."""
    settings.METRICS_TOKEN = TOKEN
    broker = _filesystem_broker(tmp_path / "broker", monkeypatch)
    broker.conf.task_queues = settings.CELERY_TASK_QUEUES
    broker.conf.task_routes = settings.CELERY_TASK_ROUTES
    broker.send_task("mailboxes.enqueue_due_polls")
    broker.send_task("mailboxes.enqueue_due_polls")
    broker.send_task("mailboxes.poll_mailbox", args=[1])
    monkeypatch.setattr(metrics, "celery_app", broker)
    figures = _scrape(client)
    assert figures[("recruitmail_queue_depth", (("queue", settings.TASK_QUEUE_SCHEDULER),))] == 2
    assert figures[("recruitmail_queue_depth", (("queue", settings.TASK_QUEUE_POLLS),))] == 1


@pytest.mark.peers
def test_queue_depth_on_redis_counts_every_priority_list(monkeypatch: Any) -> None:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    # Celery prefers CELERY_BROKER_URL to the app's own broker: without this, the tasks would
    # go to the run's broker while the count and the clean-up read REDIS_URL.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    # Redis runs in CI and on every machine `make test` is meant for: missing, this fails.
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    client.ping()
    # A queue of its own, so that nothing else on this Redis takes or adds to it.
    queue = f"metrics-test-{uuid.uuid4().hex}"
    app = Celery("metrics-test", broker=url, set_as_current=False)
    app.conf.task_default_queue = queue
    try:
        app.send_task("mailboxes.poll_mailbox", args=[1])
        app.send_task("mailboxes.poll_mailbox", args=[2])
        app.send_task("mailboxes.poll_mailbox", args=[3], priority=9)
        assert metrics.queue_depth(app) == 3
    finally:
        lists = [f"{queue}\x06\x16{step}" for step in (3, 6, 9)]
        client.delete(queue, *lists, f"_kombu.binding.{queue}")
        client.close()
