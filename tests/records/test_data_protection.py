"""Erasing a candidate and exporting a candidate's mail (GDPR erasure and access), on SQLite."""

from __future__ import annotations

import csv
import io
import mailbox
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from mailboxes.mailstore import content_hash, raw_store
from mailboxes.models import (
    AddressRole,
    Attachment,
    ImportState,
    Message,
    MessageLink,
    ServerMessage,
    ServerMessageState,
    StoredBlob,
    uid_digest,
)
from records.mail_export import MANIFEST_COLUMNS, mbox_quote, mbox_unquote
from records.models import Candidate, RecordAddress
from sharing.models import AuditAction, SharingAuditEntry
from tests.conftest import Team
from tests.mailboxes.factories import MailboxFactory, MessageFactory, attachment_add
from tests.mailboxes.mail import make_message
from tests.records.factories import CandidateFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def store(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "mailstore")
    return tmp_path / "mailstore"


def stored(owner: Any, mailbox: Any, raw: bytes, **fields: Any) -> Message:
    """A message with its raw bytes in the mail store, as the importer leaves it."""
    digest = content_hash(raw)
    headers = BytesHeaderParser(policy=default).parsebytes(raw)
    fields.setdefault("subject", str(headers["Subject"]))
    fields.setdefault("from_address", headers["From"].addresses[0].addr_spec)
    return MessageFactory(
        owner=owner,
        mailbox=mailbox,
        raw=raw_store(raw=raw, digest=digest),
        raw_sha256=digest,
        raw_size=len(raw),
        **fields,
    )


def exists(name: str) -> bool:
    return default_storage.exists(name)


@dataclass
class Scene:
    candidate: Candidate
    other: Candidate
    only_candidate: Message  # linked to the candidate alone, with two attachments
    twin: Message  # linked to the candidate alone, same raw bytes as ``shared``
    shared: Message  # linked to the candidate and to ``other``
    others_mail: Message  # linked to ``other`` alone, shares an attachment with only_candidate
    unique_blob: StoredBlob
    shared_blob: StoredBlob
    server_row: ServerMessage


@pytest.fixture
def scene(team: Team, store: Path) -> Scene:
    org = team.organization
    candidate = CandidateFactory(
        organization=org, owner=team.owner, addresses=["taro@example.jp", "old.taro@example.net"]
    )
    RecordAddress.objects.filter(address="old.taro@example.net").update(removed_at=timezone.now())
    other = CandidateFactory(organization=org, owner=team.owner, addresses=["hana@example.jp"])
    owner_box = MailboxFactory(owner=team.owner)
    mate_box = MailboxFactory(owner=team.teammate)
    only_candidate = stored(
        team.owner, owner_box, make_message(subject="CV"), records=[candidate], subject="CV"
    )
    unique = attachment_add(only_candidate, filename="cv.pdf", payload=b"%PDF only taro")
    shared_attachment = attachment_add(only_candidate, filename="terms.pdf", payload=b"%PDF terms")
    shared_raw = make_message(subject="Both", cc="hana@example.jp")
    shared = stored(team.owner, owner_box, shared_raw, records=[candidate, other], subject="Both")
    twin = stored(team.teammate, mate_box, shared_raw, records=[candidate], subject="Both")
    others_mail = stored(
        team.owner,
        owner_box,
        make_message(subject="Hana", sender="hana@example.jp"),
        records=[other],
        subject="Hana",
        from_address="hana@example.jp",
    )
    attachment_add(others_mail, filename="terms.pdf", payload=b"%PDF terms")
    server_row = ServerMessage.objects.create(
        mailbox=owner_box,
        uid="uid-cv",
        uid_hash=uid_digest("uid-cv"),
        state=ServerMessageState.IMPORTED,
        message=only_candidate,
    )
    return Scene(
        candidate=candidate,
        other=other,
        only_candidate=only_candidate,
        twin=twin,
        shared=shared,
        others_mail=others_mail,
        unique_blob=unique.blob,
        shared_blob=shared_attachment.blob,
        server_row=server_row,
    )


def erase_url(candidate: Candidate) -> str:
    return reverse("records:candidate_erase", args=[candidate.pk])


def export_url(candidate: Candidate) -> str:
    return reverse("records:candidate_export", args=[candidate.pk])


# Erasure


def test_confirmation_page_counts_what_erasing_does(team: Team, scene: Scene) -> None:
    page = team.client_for(team.admin).get(erase_url(scene.candidate)).content.decode()
    assert "2 email addresses, including removed ones" in page
    assert "2 messages that concern only this candidate" in page
    assert "2 attachments of those messages" in page
    assert "1 message also concerns other records" in page
    assert "This cannot be undone." in page
    assert Candidate.objects.filter(pk=scene.candidate.pk).exists()  # a GET erases nothing


def test_erase_deletes_the_candidates_own_mail_and_unlinks_shared_mail(
    team: Team, scene: Scene, django_capture_on_commit_callbacks: Any
) -> None:
    client = team.client_for(team.admin)
    unique_file = scene.unique_blob.file.name
    shared_file = scene.shared_blob.file.name
    own_raw = scene.only_candidate.raw.name
    twin_raw = scene.twin.raw.name
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            erase_url(scene.candidate),
            {"deleted": 2, "unlinked": 1, "attachments": 2, "addresses": 2},
        )
    assert response.status_code == 302
    assert not Candidate.objects.filter(pk=scene.candidate.pk).exists()
    assert not RecordAddress.objects.filter(record_id=scene.candidate.pk).exists()
    assert not Message.objects.filter(pk__in=[scene.only_candidate.pk, scene.twin.pk]).exists()
    # Mail that concerns another record stays, linked to that record only.
    assert list(MessageLink.objects.filter(message=scene.shared).values_list("record_id")) == [
        (scene.other.pk,)
    ]
    assert Message.objects.filter(pk=scene.others_mail.pk).exists()
    # Attachments and files: only what no surviving message uses goes.
    assert not Attachment.objects.filter(message_id=scene.only_candidate.pk).exists()
    assert not StoredBlob.objects.filter(pk=scene.unique_blob.pk).exists()
    assert not exists(unique_file) and not exists(own_raw)
    assert StoredBlob.objects.filter(pk=scene.shared_blob.pk).exists() and exists(shared_file)
    assert twin_raw == scene.shared.raw.name and exists(twin_raw)  # the shared message's bytes
    # The UID bookkeeping stays, so the message is not imported again.
    scene.server_row.refresh_from_db()
    assert scene.server_row.state == ServerMessageState.IMPORTED
    assert scene.server_row.message_id is None


def test_erase_is_recorded_in_the_audit_trail(
    team: Team, scene: Scene, django_capture_on_commit_callbacks: Any
) -> None:
    client = team.client_for(team.admin)
    name = scene.candidate.display_name
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            erase_url(scene.candidate),
            {"deleted": 2, "unlinked": 1, "attachments": 2, "addresses": 2},
        )
    entry = SharingAuditEntry.objects.get(action=AuditAction.RECORD_ERASED)
    assert (entry.organization, entry.actor, entry.record_name) == (
        team.organization,
        team.admin,
        name,
    )
    assert entry.counts == {"deleted": 2, "unlinked": 1, "attachments": 2, "addresses": 2}
    page = client.get(reverse("sharing:audit")).content.decode()
    assert "Candidate erased" in page and name in page
    assert "Messages deleted: 2; kept for other records and unlinked: 1" in page


def test_erase_with_stale_counts_erases_nothing(team: Team, scene: Scene) -> None:
    response = team.client_for(team.admin).post(
        erase_url(scene.candidate),
        {"deleted": 1, "unlinked": 1, "attachments": 2, "addresses": 2},
    )
    assert response.status_code == 200
    assert "changed meanwhile" in response.content.decode()
    assert Candidate.objects.filter(pk=scene.candidate.pk).exists()
    assert Message.objects.filter(pk=scene.only_candidate.pk).exists()


# Export


def test_export_page_says_it_ignores_the_sharing_rule(team: Team, scene: Scene) -> None:
    page = team.client_for(team.admin).get(export_url(scene.candidate)).content.decode()
    assert "does not follow the mailboxes' sharing settings" in page
    assert "3 messages, from every mailbox of the organisation." in page
    assert not SharingAuditEntry.objects.filter(action=AuditAction.RECORD_EXPORTED).exists()


@pytest.fixture
def history(team: Team, store: Path) -> tuple[Candidate, list[bytes]]:
    """A candidate's mail in private mailboxes of two members, oldest first, in raw bytes."""
    org = team.organization
    candidate = CandidateFactory(
        organization=org, owner=team.owner, addresses=["taro@example.jp", "old.taro@example.net"]
    )
    RecordAddress.objects.filter(address="old.taro@example.net").update(removed_at=timezone.now())
    owner_box = MailboxFactory(owner=team.owner)
    mate_box = MailboxFactory(owner=team.teammate)
    tricky = make_message(
        subject="From lines",
        body="Hello,\nFrom the desk of Taro\n>From a quoted line\n>>From deeper\nFrom\n",
    )
    assert b"\r\nFrom the desk" in tricky and b"\r\n>From a quoted" in tricky
    raws = [
        tricky,
        make_message(subject="履歴書", sender="old.taro@example.net", body="山田です。\n"),
        make_message(subject="Bcc'd", sender="hr@client.example", to="boss@client.example"),
    ]
    when = [datetime(2025, month, 1, tzinfo=UTC) for month in (1, 2, 3)]
    stored(team.owner, owner_box, raws[0], records=[candidate], sort_at=when[0])
    stored(team.teammate, mate_box, raws[1], records=[candidate], sort_at=when[1])
    # Not linked (Bcc does not link), but one of the candidate's addresses is on it.
    stored(
        team.teammate,
        mate_box,
        raws[2],
        sort_at=when[2],
        addresses=[(AddressRole.FROM, "hr@client.example"), (AddressRole.BCC, "taro@example.jp")],
    )
    # Too large: nothing stored, listed in the manifest only.
    MessageFactory(
        owner=team.owner,
        mailbox=owner_box,
        records=[candidate],
        import_state=ImportState.PLACEHOLDER,
        sort_at=datetime(2025, 4, 1, tzinfo=UTC),
    )
    # Not the candidate's: someone else's mail, and another organisation's with the address.
    stored(
        team.owner,
        owner_box,
        make_message(subject="Other", sender="x@example.com"),
    )
    outsider_box = MailboxFactory(owner=team.outsider)
    stored(team.outsider, outsider_box, make_message(subject="Elsewhere"), records=[])
    return candidate, raws


def test_mbox_export_holds_every_message_byte_exact(
    team: Team, history: tuple[Candidate, list[bytes]], tmp_path: Path
) -> None:
    candidate, raws = history
    response = team.client_for(team.admin).post(export_url(candidate), {"format": "mbox"})
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/mbox"
    assert response["Content-Disposition"].startswith("attachment;")
    path = tmp_path / "export.mbox"
    path.write_bytes(b"".join(response.streaming_content))
    box = mailbox.mbox(str(path))
    exported = [mbox_unquote(box.get_bytes(key)) for key in box.keys()]
    assert exported == raws
    assert box[0].get_from().startswith("taro@example.jp ")
    assert b"\n>From the desk of Taro" in path.read_bytes()
    assert b"\n>>From a quoted line" in path.read_bytes()


def test_zip_export_holds_the_mbox_and_a_manifest(
    team: Team, history: tuple[Candidate, list[bytes]], tmp_path: Path
) -> None:
    candidate, raws = history
    response = team.client_for(team.admin).post(export_url(candidate), {"format": "zip"})
    assert response["Content-Type"] == "application/zip"
    assert response.streaming
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.testzip() is None
    assert sorted(archive.namelist()) == ["mail.mbox", "manifest.csv"]
    path = tmp_path / "mail.mbox"
    path.write_bytes(archive.read("mail.mbox"))
    box = mailbox.mbox(str(path))
    assert [mbox_unquote(box.get_bytes(key)) for key in box.keys()] == raws
    rows = list(csv.reader(io.StringIO(archive.read("manifest.csv").decode("utf-8"))))
    assert rows[0] == MANIFEST_COLUMNS
    assert [row[5] for row in rows[1:4]] == ["From lines", "履歴書", "Bcc'd"]
    assert [row[-1] for row in rows[1:]] == ["yes", "yes", "yes"] + [
        "no raw copy stored (too large: left on the server)"
    ]
    assert rows[1][7] == content_hash(raws[0])


def test_each_export_is_recorded_in_the_audit_trail(
    team: Team, history: tuple[Candidate, list[bytes]]
) -> None:
    candidate, _raws = history
    client = team.client_for(team.admin)
    for wanted in ("mbox", "zip"):
        b"".join(client.post(export_url(candidate), {"format": wanted}).streaming_content)
    entries = SharingAuditEntry.objects.filter(action=AuditAction.RECORD_EXPORTED)
    assert entries.count() == 2
    assert {(e.actor, e.record_name) for e in entries} == {(team.admin, candidate.display_name)}
    assert {e.counts["messages"] for e in entries} == {4}
    page = client.get(reverse("sharing:audit")).content.decode()
    assert "Candidate&#x27;s mail exported" in page and "Messages exported: 4" in page


def test_mbox_quoting_is_reversible() -> None:
    raw = b"From x\r\n>From y\n>>From z\nFromage\n From not\n"
    assert mbox_quote(raw) == b">From x\r\n>>From y\n>>>From z\nFromage\n From not\n"
    assert mbox_unquote(mbox_quote(raw)) == raw


# Who may


def test_recruiters_get_403_for_erase_and_export(team: Team, scene: Scene) -> None:
    client = team.client_for(team.owner)  # the candidate's own owner, but not an admin
    assert client.get(erase_url(scene.candidate)).status_code == 403
    assert client.post(erase_url(scene.candidate), {}).status_code == 403
    assert client.get(export_url(scene.candidate)).status_code == 403
    assert client.post(export_url(scene.candidate), {"format": "mbox"}).status_code == 403
    assert Candidate.objects.filter(pk=scene.candidate.pk).exists()
    assert not SharingAuditEntry.objects.exists()
    page = client.get(scene.candidate.get_absolute_url()).content.decode()
    assert erase_url(scene.candidate) not in page and export_url(scene.candidate) not in page


def test_another_organisations_candidate_is_a_404(team: Team, scene: Scene) -> None:
    outsider = team.client_for(team.outsider)  # an admin, of another organisation
    assert outsider.get(erase_url(scene.candidate)).status_code == 404
    assert outsider.post(erase_url(scene.candidate), {}).status_code == 404
    assert outsider.get(export_url(scene.candidate)).status_code == 404
    assert outsider.post(export_url(scene.candidate), {"format": "zip"}).status_code == 404
    assert Candidate.objects.filter(pk=scene.candidate.pk).exists()


def test_admin_sees_the_buttons_on_a_candidates_page(team: Team, scene: Scene) -> None:
    page = team.client_for(team.admin).get(scene.candidate.get_absolute_url()).content.decode()
    assert erase_url(scene.candidate) in page and export_url(scene.candidate) in page
