"""Scheduling through a real Celery worker on Redis: the beat task and "Fetch now"."""

from __future__ import annotations

import subprocess
import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from mailboxes.models import Mailbox, Message
from mailboxes.tasks import enqueue_due_polls, poll_mailbox
from tests.conftest import Team
from tests.mailboxes.factories import MailboxFactory
from tests.mailboxes.mail import make_message
from tests.peers.fixtures import Pop3Account

pytestmark = pytest.mark.django_db(transaction=True)


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


def test_a_poll_stores_its_status_in_the_owners_language(team: Team) -> None:
    """The worker has no request to take a language from: it writes for the mailbox's owner."""
    team.owner.language = "ja"
    team.owner.save(update_fields=["language"])
    # 127.0.0.1 without MAIL_HOSTS_ALLOW_LOOPBACK: the poll fails before any connection.
    japanese: Mailbox = MailboxFactory(owner=team.owner)
    english: Mailbox = MailboxFactory(owner=team.teammate)  # no language chosen
    poll_mailbox(japanese.pk)
    poll_mailbox(english.pk)
    japanese.refresh_from_db()
    english.refresh_from_db()
    assert japanese.status_message.startswith("メールサーバー名がプライベート")
    assert english.status_message.startswith("The mail server name points to a private")
    assert japanese.poll_reports.get().error_message == japanese.status_message
