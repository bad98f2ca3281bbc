"""The organisation's retention period: the nightly purge, against a real Dovecot, and its setting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from mailboxes import tasks
from mailboxes.importer import mailbox_poll
from mailboxes.models import Attachment, Mailbox, Message, ServerMessage, ServerMessageState
from mailboxes.retention import mail_retention_purge
from sharing.models import AuditAction, SharingAuditEntry
from tests.conftest import Team
from tests.mailboxes.factories import MessageFactory
from tests.mailboxes.mail import make_message
from tests.peers.fixtures import Pop3Account
from tests.records.factories import OrganizationFactory


@pytest.mark.django_db(transaction=True)
def test_purge_deletes_old_mail_and_its_files_keeps_new_mail_and_is_not_reimported(
    team: Team, pop3_account: Pop3Account, dovecot_mailbox: Mailbox
) -> None:
    recent = timezone.now() - timedelta(days=2)
    pop3_account.deliver(
        make_message(
            subject="Old",
            date=datetime(2020, 1, 6, 9, 0, tzinfo=UTC),
            attachments=[
                ("old-only.pdf", b"%PDF only in the old mail", "application/pdf"),
                ("terms.pdf", b"%PDF terms of business", "application/pdf"),
            ],
        )
    )
    pop3_account.deliver(
        make_message(
            subject="New",
            date=recent,
            attachments=[("terms.pdf", b"%PDF terms of business", "application/pdf")],
        )
    )
    assert mailbox_poll(mailbox_id=dovecot_mailbox.pk).imported == 2
    old = Message.objects.get(subject="Old")
    new = Message.objects.get(subject="New")
    old_blobs = {a.filename: a.blob for a in Attachment.objects.filter(message=old)}
    old_raw = old.raw.name
    organization = team.organization
    organization.mail_retention_days = 30
    organization.save()

    assert tasks.purge_expired_mail(organization.pk) == 1

    assert list(Message.objects.values_list("subject", flat=True)) == ["New"]
    assert not default_storage.exists(old_raw)
    assert default_storage.exists(new.raw.name)
    only_old = old_blobs["old-only.pdf"]
    assert not type(only_old).objects.filter(pk=only_old.pk).exists()
    assert not default_storage.exists(only_old.file.name)
    # The attachment the new message has too stays, file and all.
    terms = old_blobs["terms.pdf"]
    assert Attachment.objects.get(message=new).blob_id == terms.pk
    assert default_storage.exists(terms.file.name)
    # The UID registry keeps the purged message, so a poll of the server (which keeps mail)
    # does not bring it back.
    rows = ServerMessage.objects.filter(mailbox=dovecot_mailbox, state=ServerMessageState.IMPORTED)
    assert rows.count() == 2
    assert rows.filter(message=None).count() == 1
    again = mailbox_poll(mailbox_id=dovecot_mailbox.pk)
    assert (again.on_server, again.new, again.imported) == (2, 0, 0)
    assert list(Message.objects.values_list("subject", flat=True)) == ["New"]
    # Each run is in the audit trail, with its count.
    entry = SharingAuditEntry.objects.get(action=AuditAction.RETENTION_PURGED)
    assert (entry.organization, entry.actor, entry.counts) == (
        organization,
        None,
        {"messages": 1, "days": 30},
    )
    assert mail_retention_purge(organization=organization) == 0
    assert SharingAuditEntry.objects.filter(action=AuditAction.RETENTION_PURGED).count() == 2


@pytest.mark.django_db
def test_purge_goes_in_batches_and_touches_only_its_organisation(
    team: Team, settings: Any, tmp_path: Any
) -> None:
    settings.MEDIA_ROOT = str(tmp_path / "mailstore")
    old = timezone.now() - timedelta(days=100)
    for _ in range(5):
        MessageFactory(owner=team.owner, sort_at=old)
    MessageFactory(owner=team.owner, sort_at=timezone.now() - timedelta(days=10))
    MessageFactory(owner=team.outsider, sort_at=old)  # another organisation, no retention
    team.organization.mail_retention_days = 30
    team.organization.save()
    assert mail_retention_purge(organization=team.organization, batch_size=2) == 5
    assert Message.objects.filter(organization=team.organization).count() == 1
    assert Message.objects.filter(organization=team.other_organization).count() == 1
    page = team.client_for(team.admin).get(reverse("sharing:audit")).content.decode()
    assert "Old mail deleted (retention)" in page and "Automatic (retention period)" in page
    assert "Messages older than 30 days deleted: 5" in page
    # An organisation that keeps mail for ever is not purged, nor recorded.
    assert mail_retention_purge(organization=team.other_organization) == 0
    assert not SharingAuditEntry.objects.filter(organization=team.other_organization).exists()


@pytest.mark.django_db
def test_beat_enqueues_one_purge_per_organisation_with_a_period(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["enqueue-retention-purges"]
    assert entry["task"] == "mailboxes.enqueue_retention_purges"
    assert entry["schedule"] == 24 * 60 * 60
    team.organization.mail_retention_days = 365
    team.organization.save()
    OrganizationFactory()  # no period: not enqueued
    enqueued: list[int] = []
    monkeypatch.setattr(tasks.purge_expired_mail, "delay", enqueued.append)
    assert tasks.enqueue_retention_purges() == 1
    assert enqueued == [team.organization.pk]


def settings_post(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "org-name": "Sakura Agency",
        "org-poll_interval_seconds": 300,
        "org-mail_retention_days": "",
    }
    data.update(overrides)
    return data


@pytest.mark.django_db
def test_admin_sets_a_retention_period_with_a_warning(team: Team) -> None:
    client = team.client_for(team.admin)
    page = client.get(reverse("organization_settings")).content.decode()
    assert "Mail is kept for ever." in page
    response = client.post(
        reverse("organization_settings"), settings_post(**{"org-mail_retention_days": 365})
    )
    assert response.status_code == 302
    team.organization.refresh_from_db()
    assert team.organization.mail_retention_days == 365
    page = client.get(reverse("organization_settings")).content.decode()
    assert "Mail older than 365 days is deleted for good every night" in page
    # Back to for ever.
    client.post(reverse("organization_settings"), settings_post())
    team.organization.refresh_from_db()
    assert team.organization.mail_retention_days is None


@pytest.mark.django_db
@pytest.mark.parametrize("days", [0, 7, 29, 36501, "soon"])
def test_a_retention_period_out_of_range_is_a_form_error(team: Team, days: object) -> None:
    response = team.client_for(team.admin).post(
        reverse("organization_settings"), settings_post(**{"org-mail_retention_days": days})
    )
    assert response.status_code == 200
    team.organization.refresh_from_db()
    assert team.organization.mail_retention_days is None


@pytest.mark.django_db
def test_a_period_that_deletes_mail_needs_confirming(team: Team) -> None:
    for _ in range(3):
        MessageFactory(owner=team.owner, sort_at=timezone.now() - timedelta(days=400))
    client = team.client_for(team.admin)
    url = reverse("organization_settings")
    response = client.post(url, settings_post(**{"org-mail_retention_days": 365}))
    assert response.status_code == 200
    assert "3 messages are older than 365 days" in response.content.decode()
    assert 'type="checkbox" name="org-confirm_retention"' in response.content.decode()
    assert "Mail is kept for ever." in response.content.decode()  # nothing saved yet
    team.organization.refresh_from_db()
    assert team.organization.mail_retention_days is None
    response = client.post(
        url,
        settings_post(**{"org-mail_retention_days": 365, "org-confirm_retention": "on"}),
    )
    assert response.status_code == 302
    team.organization.refresh_from_db()
    assert team.organization.mail_retention_days == 365
    assert Message.objects.count() == 3  # deleted by the nightly purge, not by saving


@pytest.mark.django_db
def test_recruiters_cannot_change_the_retention_period(team: Team) -> None:
    response = team.client_for(team.owner).post(
        reverse("organization_settings"), settings_post(**{"org-mail_retention_days": 30})
    )
    assert response.status_code == 403
    team.organization.refresh_from_db()
    assert team.organization.mail_retention_days is None
