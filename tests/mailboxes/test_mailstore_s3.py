"""The mail store on an S3 bucket (MAIL_STORAGE_BACKEND=s3): import, download, view original and
/healthz through django-storages' S3 backend, against moto's in-process S3 (no network)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage, storages
from django.urls import reverse
from moto import mock_aws

from mailboxes.importer import mailbox_poll
from mailboxes.mailstore import raw_read, raw_store
from mailboxes.models import Attachment, Mailbox, Message, PollOutcome
from tests.conftest import Team
from tests.mailboxes.mail import make_message
from tests.peers.fixtures import Pop3Account

pytestmark = pytest.mark.django_db(transaction=True)

BUCKET = "recruitmail-mail-test"
# A closed loopback port: moto answers every call in-process; should one ever escape, it
# goes nowhere rather than to a real host.
ENDPOINT = "http://127.0.0.1:9"
PDF = b"%PDF-1.4 " + bytes(range(256)) * 40


@pytest.fixture
def s3_bucket(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The default storage on an empty bucket, configured as settings.py does for s3."""
    monkeypatch.setenv("MOTO_S3_CUSTOM_ENDPOINTS", ENDPOINT)
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        client = boto3.client(
            "s3",
            endpoint_url=ENDPOINT,
            region_name="us-east-1",
            aws_access_key_id="test-access",
            aws_secret_access_key="test-secret",  # noqa: S106
        )
        client.create_bucket(Bucket=BUCKET)
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {
                    "bucket_name": BUCKET,
                    "endpoint_url": ENDPOINT,
                    "region_name": "us-east-1",
                    "access_key": "test-access",
                    "secret_key": "test-secret",
                    "default_acl": None,
                    "querystring_auth": True,
                    "file_overwrite": True,
                    "max_memory_size": 10 * 1024 * 1024,
                },
            },
        }
        assert type(storages["default"]).__name__ == "S3Storage"
        yield client


def _keys(client: Any) -> set[str]:
    listing = client.list_objects_v2(Bucket=BUCKET)
    return {item["Key"] for item in listing.get("Contents", [])}


def test_import_download_and_original_on_s3(
    team: Team,
    pop3_account: Pop3Account,
    dovecot_mailbox: Mailbox,
    s3_bucket: Any,
    mail_settings: Any,
) -> None:
    raw = make_message(subject="履歴書 on S3", attachments=[("履歴書.pdf", PDF, "application/pdf")])
    pop3_account.deliver(raw)

    report = mailbox_poll(mailbox_id=dovecot_mailbox.pk)
    assert report is not None
    assert (report.outcome, report.imported) == (PollOutcome.OK, 1)

    message = Message.objects.get(mailbox=dovecot_mailbox)
    attachment = Attachment.objects.get(message=message)
    raw_digest = hashlib.sha256(raw).hexdigest()
    pdf_digest = hashlib.sha256(PDF).hexdigest()
    assert _keys(s3_bucket) == {
        f"raw/{raw_digest[:2]}/{raw_digest}.eml",
        f"blobs/{pdf_digest[:2]}/{pdf_digest}",
    }
    # Nothing went to the folder store.
    assert not any(Path(mail_settings.MEDIA_ROOT).rglob("*.*"))
    assert raw_read(message.raw.name) == raw

    owner = team.client_for(team.owner)
    download = owner.get(reverse("mail:attachment", args=[attachment.pk]))
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == PDF
    assert download["Content-Length"] == str(len(PDF))
    original = owner.get(reverse("mail:message_original", args=[message.pk]))
    assert original.status_code == 200
    assert original.content == raw  # all ASCII: shown exactly as it arrived

    # A second poll finds the message already stored; nothing is written twice.
    again = mailbox_poll(mailbox_id=dovecot_mailbox.pk)
    assert again is not None
    assert (again.outcome, again.imported) == (PollOutcome.OK, 0)
    assert len(_keys(s3_bucket)) == 2

    health = team.client_for(team.owner).get(reverse("healthz"))
    assert health.json()["checks"]["storage"] == "ok"


def test_a_cut_off_object_is_written_again_on_s3(s3_bucket: Any) -> None:
    raw = make_message(subject="Written whole")
    digest = hashlib.sha256(raw).hexdigest()
    name = f"raw/{digest[:2]}/{digest}.eml"
    default_storage.save(name, ContentFile(raw[:10]))

    assert raw_store(raw=raw, digest=digest) == name
    assert raw_read(name) == raw
