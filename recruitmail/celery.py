"""The Celery app: workers run ``celery -A recruitmail worker``, the scheduler ``... beat``."""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recruitmail.settings")

app = Celery("recruitmail")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _prepare_filesystem_broker(sender: Celery, **kwargs: object) -> None:
    """kombu's filesystem transport (the embedded default) needs its folders to exist, and its
    exchange table to bind every task queue: that table is what routes a published task to a
    queue, and a task published while its queue is unbound (before any worker or producer
    declared it in this broker folder) is dropped. So every queue, the poll queue and the
    scheduler's (settings.py), is declared here, in every process, through kombu itself. No-op
    on Redis."""
    if not str(sender.conf.broker_url).startswith("filesystem://"):
        return
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)
    default_name = sender.conf.task_default_queue or "celery"
    queues = list(sender.conf.task_queues or []) or [
        Queue(default_name, Exchange(default_name, type="direct"), routing_key=default_name)
    ]
    with sender.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in queues:
            queue(channel).declare()
