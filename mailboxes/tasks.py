"""Celery tasks: thin wrappers that load ids and call services (HackSoft style)."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone, translation

from mailboxes.importer import mailbox_poll
from mailboxes.models import Mailbox
from mailboxes.retention import mail_retention_purge
from mailboxes.search_partitions import search_partitions_extend, search_table_analyze
from records.models import Organization

logger = logging.getLogger(__name__)


@shared_task(
    name="mailboxes.poll_mailbox",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
)
def poll_mailbox(mailbox_id: int) -> None:
    """Poll one mailbox. Idempotent: a redelivered or duplicate task finds the lease taken, or
    nothing new on the server."""
    owner_languages = Mailbox.objects.filter(pk=mailbox_id).values_list(
        "owner__language", flat=True
    )
    if not owner_languages:
        logger.info("poll_mailbox: mailbox %s no longer exists", mailbox_id)
        return
    # The poll stores its status and error sentences for the owner to read on the mailbox
    # page: write them in the owner's language, not the worker's.
    with translation.override(owner_languages[0] or settings.LANGUAGE_CODE):
        mailbox_poll(mailbox_id=mailbox_id)


@shared_task(name="mailboxes.enqueue_due_polls", ignore_result=True)
def enqueue_due_polls() -> int:
    """Enqueue one poll per due mailbox (beat runs this every few seconds).

    The due mailboxes' next poll time is pushed past the lease first, with a conditional update
    per mailbox, so two schedulers (or a slow queue) never enqueue the same mailbox twice; the
    poll itself sets the real next time when it finishes.
    """
    now = timezone.now()
    due_ids = list(
        Mailbox.objects.due(now).order_by("next_poll_at").values_list("pk", flat=True)[:1000]
    )
    hold_until = now + timedelta(seconds=settings.MAIL_POLL_LEASE_SECONDS)
    enqueued = 0
    for mailbox_id in due_ids:
        with transaction.atomic():
            claimed = Mailbox.objects.filter(pk=mailbox_id, next_poll_at__lte=now).update(
                next_poll_at=hold_until
            )
            if claimed:
                transaction.on_commit(lambda mailbox_id=mailbox_id: poll_mailbox.delay(mailbox_id))
                enqueued += 1
    return enqueued


def poll_enqueue(*, mailbox: Mailbox) -> None:
    """ "Fetch now": enqueue a poll after the current transaction commits."""
    transaction.on_commit(lambda: poll_mailbox.delay(mailbox.pk))


@shared_task(name="mailboxes.enqueue_retention_purges", ignore_result=True)
def enqueue_retention_purges() -> int:
    """Enqueue one purge per organisation with a retention period (beat runs this daily)."""
    organization_ids = list(
        Organization.objects.filter(mail_retention_days__isnull=False).values_list("pk", flat=True)
    )
    for organization_id in organization_ids:
        purge_expired_mail.delay(organization_id)
    return len(organization_ids)


@shared_task(name="mailboxes.extend_search_partitions", ignore_result=True)
def extend_search_partitions() -> int:
    """Keep the search table's half-year partitions ahead of the calendar, and its planner
    statistics fresh (beat runs this daily; nothing on SQLite)."""
    added = search_partitions_extend()
    search_table_analyze()
    return added


@shared_task(
    name="mailboxes.purge_expired_mail",
    acks_late=True,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
)
def purge_expired_mail(organization_id: int) -> int:
    """Delete one organisation's mail past its retention period. Idempotent: a rerun finds less;
    a run stopped by its time limit keeps the batches it committed, and tomorrow's continues."""
    organization = Organization.objects.filter(pk=organization_id).first()
    if organization is None:
        return 0
    return mail_retention_purge(organization=organization)
