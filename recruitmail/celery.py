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
    exchange table to bind the task queue: that table is what routes a published task to the
    queue, and a task published while it is empty (before any worker or producer declared the
    queue in this broker folder) is dropped. So the queue is declared here, in every process,
    through kombu itself. No-op on Redis."""
    if not str(sender.conf.broker_url).startswith("filesystem://"):
        return
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)
    name = sender.conf.task_default_queue or "celery"
    queue = Queue(name, Exchange(name, type="direct"), routing_key=name)
    with sender.connection_for_write() as connection:
        queue(connection.default_channel).declare()
