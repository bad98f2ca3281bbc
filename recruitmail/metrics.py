"""GET /metrics: Prometheus text for operators, computed from the database at scrape time.

Every figure is read from shared state (PostgreSQL, the broker) when Prometheus asks, never
counted in one process's memory, so any web process on any machine answers the same numbers
however many workers import mail. The labels are small fixed sets (statuses, outcomes, error
codes), never a mailbox, a user or an organisation.

Access needs ``Authorization: Bearer <METRICS_TOKEN>``; without the setting the page does not
exist (404), so nothing is exposed by default.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from celery import Celery
from django.conf import settings
from django.db.models import Count, Min
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mailboxes.models import (
    ImportState,
    Mailbox,
    MailboxStatus,
    Message,
    MessageOrigin,
    PollOutcome,
    PollReport,
)
from recruitmail.celery import app as celery_app

logger = logging.getLogger(__name__)

# kombu's Redis transport keeps messages with a priority in sibling lists named
# "<queue>\x06\x16<priority>" (priority steps 0, 3, 6, 9; 0 is the plain list).
_REDIS_PRIORITY_SEPARATOR = "\x06\x16"
_REDIS_PRIORITY_STEPS = (0, 3, 6, 9)
_BROKER_TIMEOUT_SECONDS = 2.0

_FAILED_OUTCOMES = (PollOutcome.ERROR, PollOutcome.AUTH_FAILED)


def queue_names(app: Celery) -> list[str]:
    """The app's declared queues (settings: the poll queue and the scheduler's), else its
    default queue."""
    declared = [queue.name for queue in app.conf.task_queues or []]
    return declared or [app.conf.task_default_queue]


def queue_depth(app: Celery, queue: str | None = None) -> int | None:
    """Messages waiting in ``queue`` (the app's default queue unless named), or None for a
    broker we cannot count.

    Redis: LLEN of the queue's lists. The filesystem broker: its waiting message files (a
    worker removes a file when it takes the message).
    """
    queue = queue or app.conf.task_default_queue
    # A failover broker URL lists several brokers separated by ";": the first is in use.
    url = str(app.conf.broker_url).split(";")[0].strip()
    scheme = url.partition("://")[0]
    if scheme == "filesystem":
        folder = Path((app.conf.broker_transport_options or {})["data_folder_in"])
        suffix = f".{queue}.msg"
        with os.scandir(folder) as entries:
            return sum(1 for entry in entries if entry.name.endswith(suffix))
    if scheme in ("redis", "rediss", "unix"):
        import redis  # the redis package is a dependency; imported only where used

        client = redis.Redis.from_url(
            url,
            socket_timeout=_BROKER_TIMEOUT_SECONDS,
            socket_connect_timeout=_BROKER_TIMEOUT_SECONDS,
        )
        try:
            with client.pipeline(transaction=False) as pipe:
                for step in _REDIS_PRIORITY_STEPS:
                    pipe.llen(queue if step == 0 else f"{queue}{_REDIS_PRIORITY_SEPARATOR}{step}")
                return sum(int(length) for length in pipe.execute())
        finally:
            client.close()
    return None


class RecruitMailCollector(Collector):
    """Reads the figures on every scrape; four database queries and one broker call per queue."""

    def collect(self) -> Iterator[Metric]:
        yield from self._messages()
        yield from self._polls()
        yield from self._mailboxes()
        yield from self._queue()

    @staticmethod
    def _messages() -> Iterator[Metric]:
        imported = CounterMetricFamily(
            "recruitmail_messages_imported",
            "Messages imported over POP3, by how they were stored.",
            labels=["state"],
        )
        counts = dict.fromkeys(ImportState.values, 0)
        rows = (
            Message.objects.filter(origin=MessageOrigin.POP3)
            .order_by()
            .values_list("import_state")
            .annotate(n=Count("pk"))
        )
        counts.update(dict(rows))
        for state, count in sorted(counts.items()):
            imported.add_metric([state], count)
        yield imported

    @staticmethod
    def _polls() -> Iterator[Metric]:
        polls = CounterMetricFamily(
            "recruitmail_polls", "Finished polls, by outcome.", labels=["outcome"]
        )
        failed = CounterMetricFamily(
            "recruitmail_polls_failed",
            "Failed polls, by the reason the importer recorded (its error code).",
            labels=["reason"],
        )
        by_outcome = dict.fromkeys(PollOutcome.values, 0)
        by_reason: dict[str, int] = {}
        rows = (
            PollReport.objects.filter(finished_at__isnull=False)
            .order_by()
            .values_list("outcome", "error_code")
            .annotate(n=Count("pk"))
        )
        for outcome, code, count in rows:
            by_outcome[outcome] = by_outcome.get(outcome, 0) + count
            if outcome in _FAILED_OUTCOMES:
                reason = code or "unknown"
                by_reason[reason] = by_reason.get(reason, 0) + count
        for outcome, count in sorted(by_outcome.items()):
            polls.add_metric([outcome], count)
        for reason, count in sorted(by_reason.items()):
            failed.add_metric([reason], count)
        yield polls
        yield failed

    @staticmethod
    def _mailboxes() -> Iterator[Metric]:
        mailboxes = GaugeMetricFamily(
            "recruitmail_mailboxes",
            "Mailboxes by poll status; active: whether it is its owner's active (polled) mailbox.",
            labels=["status", "active"],
        )
        counts = {
            (status, active): 0 for status in MailboxStatus.values for active in (True, False)
        }
        rows = Mailbox.objects.order_by().values_list("status", "is_active").annotate(n=Count("pk"))
        for status, active, count in rows:
            counts[(status, active)] = count
        for (status, active), count in sorted(counts.items()):
            mailboxes.add_metric([status, "true" if active else "false"], count)
        yield mailboxes

        now = timezone.now()
        oldest = Mailbox.objects.due(now).aggregate(oldest=Min("next_poll_at"))["oldest"]
        yield GaugeMetricFamily(
            "recruitmail_oldest_due_poll_lag_seconds",
            "How late the most overdue mailbox's poll is (0 when none is due): the scheduler "
            "is behind when this grows.",
            value=max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
        )

    @staticmethod
    def _queue() -> Iterator[Metric]:
        try:
            depths = {name: queue_depth(celery_app, name) for name in queue_names(celery_app)}
        except Exception:  # a scrape reports the broker down rather than failing whole
            logger.warning("metrics: cannot read the broker queue", exc_info=True)
            depths, up = {}, 0
        else:
            up = 1
        yield GaugeMetricFamily(
            "recruitmail_broker_up", "1 when the broker queue could be read.", value=up
        )
        counted = {name: depth for name, depth in depths.items() if depth is not None}
        if counted:
            # The scheduler queue's depth stays near 0 while some worker consumes it; one that
            # grows means no worker does, and no poll is being enqueued.
            family = GaugeMetricFamily(
                "recruitmail_queue_depth",
                "Tasks waiting in a broker queue: its workers are behind when this grows.",
                labels=["queue"],
            )
            for name, depth in counted.items():
                family.add_metric([name], depth)
            yield family


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(RecruitMailCollector())


def _authorized(request: HttpRequest, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # compare_digest: the time taken says nothing about how much of the token was right.
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8"), token.encode("utf-8")
    )


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """The figures in Prometheus text format, for the bearer of METRICS_TOKEN only."""
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404
    if not _authorized(request, token):
        response = HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
