"""A poll's outcome: progress on its report, the mailbox's status, and when to poll next."""

from __future__ import annotations

import logging
import random
from datetime import timedelta

from django.db.models import F
from django.utils import timezone
from django.utils.translation import ngettext

from mailboxes.models import (
    Mailbox,
    MailboxStatus,
    PollOutcome,
    PollReport,
    ServerMessage,
    ServerMessageState,
)
from mailboxes.poll_session import PollSession

# The poll's log lines keep the logger operators know (docs/operations.md).
logger = logging.getLogger("mailboxes.importer")

BACKOFF_BASE_SECONDS = 60
BACKOFF_MAX_SECONDS = 60 * 60


def save_progress(report: PollReport) -> None:
    report.save(
        update_fields=[
            "on_server",
            "new",
            "imported",
            "duplicates",
            "too_large",
            "failed",
            "skipped",
            "quarantined",
        ]
    )


def _next_poll_interval(mailbox: Mailbox) -> timedelta:
    return timedelta(seconds=mailbox.organization.poll_interval_seconds)


def backoff_delay(failures: int) -> timedelta:
    """Exponential back-off with jitter: 1, 2, 4 … minutes, capped at an hour, each ±50%."""
    base = min(BACKOFF_BASE_SECONDS * 2 ** max(failures - 1, 0), BACKOFF_MAX_SECONDS)
    return timedelta(seconds=base * random.uniform(0.5, 1.5))


def finish_ok(session: PollSession, *, failed: int) -> None:
    mailbox, report = session.mailbox, session.report
    now = timezone.now()
    report.quarantined = _quarantined_count(mailbox)
    report.outcome = PollOutcome.PARTIAL if failed else PollOutcome.OK
    if failed:
        report.error_message = ngettext(
            "%(count)d message could not be stored; it will be retried.",
            "%(count)d messages could not be stored; they will be retried.",
            failed,
        ) % {"count": failed}
    report.finished_at = now
    report.save()
    Mailbox.objects.filter(pk=mailbox.pk).update(
        status=MailboxStatus.OK,
        status_code="",
        status_message=report.error_message,
        status_changed_at=now,
        consecutive_failures=0,
        last_poll_at=now,
        next_poll_at=now + _next_poll_interval(mailbox),
    )
    logger.info(
        "poll of mailbox %s: on server %d, new %d, imported %d, duplicates %d, too large %d, failed %d, deleted %d",
        mailbox.pk,
        report.on_server,
        report.new,
        report.imported,
        report.duplicates,
        report.too_large,
        report.failed,
        report.deleted_on_server,
    )


def _quarantined_count(mailbox: Mailbox) -> int:
    return ServerMessage.objects.filter(
        mailbox=mailbox, state=ServerMessageState.QUARANTINED
    ).count()


def finish_failed(session: PollSession, *, code: str, message: str, detail: str) -> None:
    mailbox, report = session.mailbox, session.report
    now = timezone.now()
    auth = code == "auth_failed"
    # A failed poll is often the one that quarantined a message (its RETR broke the session
    # once too often): its report shows that, as a completed poll's does.
    report.quarantined = _quarantined_count(mailbox)
    report.outcome = PollOutcome.AUTH_FAILED if auth else PollOutcome.ERROR
    report.error_code, report.error_message, report.finished_at = code, message, now
    report.save()
    logger.warning("poll of mailbox %s failed: %s (%s)", mailbox.pk, code, detail)
    failures = mailbox.consecutive_failures + 1
    Mailbox.objects.filter(pk=mailbox.pk).update(
        status=MailboxStatus.AUTH_FAILED if auth else MailboxStatus.ERROR,
        status_code=code,
        status_message=message,
        status_changed_at=now,
        last_poll_at=now,
        consecutive_failures=F("consecutive_failures") + 1,
        next_poll_at=now + backoff_delay(failures),
    )
