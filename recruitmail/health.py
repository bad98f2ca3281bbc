"""/healthz for load balancers: the database, the broker and the mail store answer."""

from __future__ import annotations

import logging
import time

from django.core.files.storage import default_storage
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

from recruitmail.celery import app as celery_app

logger = logging.getLogger(__name__)


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _broker() -> None:
    with celery_app.connection_for_write() as broker:
        broker.ensure_connection(max_retries=1, timeout=2)


def _storage() -> None:
    # Listing the top folder proves the store is reachable without writing to it.
    default_storage.listdir("")


CHECKS = {"database": _database, "broker": _broker, "storage": _storage}


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """200 with every check "ok", or 503 naming what failed (details only in the log)."""
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        started = time.monotonic()
        try:
            check()
        except Exception:  # a health check reports every failure, whatever it is
            logger.exception("health check %s failed", name)
            results[name] = "failing"
        else:
            results[name] = "ok"
        logger.debug("health check %s took %.3f s", name, time.monotonic() - started)
    healthy = all(value == "ok" for value in results.values())
    return JsonResponse(
        {"status": "ok" if healthy else "failing", "checks": results},
        status=200 if healthy else 503,
    )
