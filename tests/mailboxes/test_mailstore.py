"""The mail store's durability: files and the folders naming them are fsynced before the rows
that refer to them commit (``mailboxes.mailstore.files_durable``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import FileSystemStorage, default_storage

from mailboxes import mailstore, poll_fetch
from mailboxes.importer import mailbox_poll
from mailboxes.mailstore import content_hash, files_durable, raw_store
from mailboxes.models import Mailbox, Message
from tests.peers.fixtures import Pop3Account


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every path fsynced through the mail store, in order."""
    paths: list[Path] = []
    real = os.fsync

    def fsync(descriptor: int) -> None:
        paths.append(Path(os.readlink(f"/proc/self/fd/{descriptor}")))
        real(descriptor)

    monkeypatch.setattr(mailstore.os, "fsync", fsync)
    return paths


def test_each_file_and_each_folder_is_synced_once(tmp_path: Path, synced: list[Path]) -> None:
    storage = FileSystemStorage(location=tmp_path)
    names = []
    for index in range(6):
        raw = f"Subject: {index}\r\n\r\nbody\r\n".encode()
        names.append(raw_store(raw=raw, digest=content_hash(raw), storage=storage))
    # Two names in one folder, and a name given twice.
    same_folder = "raw/00/" + "0" * 64 + ".eml"
    storage.save(same_folder, mailstore.ContentFile(b"x"))
    names += [same_folder, "raw/00/" + "0" * 63 + "1.eml", names[0]]
    storage.save(names[-2], mailstore.ContentFile(b"y"))
    assert files_durable(names=names, storage=storage) == 8
    files = {tmp_path / name for name in names}
    folders = {path.parent for path in files} | {tmp_path / "raw", tmp_path}
    assert sorted(synced) == sorted(files | folders)  # each once
    # Folders after the files, deepest first: a folder's entry is in its parent.
    assert synced[: len(files)] and set(synced[: len(files)]) == files
    assert synced[-2:] == [tmp_path / "raw", tmp_path]


def test_a_storage_without_local_paths_has_nothing_to_sync(synced: list[Path]) -> None:
    class Remote(FileSystemStorage):
        def path(self, name: str) -> str:
            raise NotImplementedError("no local paths")

    assert files_durable(names=["raw/ab/abc.eml"], storage=Remote()) == 0
    assert synced == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("in_child", [False, True], ids=["in-process", "parser-process"])
def test_every_imported_raw_file_is_synced_before_its_row_commits(
    pop3_account: Pop3Account,
    dovecot_mailbox: Mailbox,
    synced: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    in_child: bool,
) -> None:
    if in_child:
        monkeypatch.setattr(poll_fetch, "PARSER_PROCESS_FROM", 1)
    committed_then: list[set[str]] = []
    real_durable = mailstore.files_durable

    def durable(**kwargs: Any) -> int:
        # What is committed at the moment the files are synced (another connection's view
        # would need PostgreSQL; the names are what matters: none of them is committed yet).
        committed_then.append(set(Message.objects.values_list("raw", flat=True)))
        return real_durable(**kwargs)

    monkeypatch.setattr("mailboxes.storing.files_durable", durable)
    for index in range(5):
        pop3_account.deliver(
            f"From: a{index}@example.com\r\nSubject: {index}\r\n\r\nx\r\n".encode()
        )
    report = mailbox_poll(mailbox_id=dovecot_mailbox.pk)
    assert report is not None and report.imported == 5
    root = Path(default_storage.path(""))
    for message in Message.objects.filter(mailbox=dovecot_mailbox):
        path = root / message.raw.name
        assert path in synced and path.parent in synced
        assert all(message.raw.name not in before for before in committed_then)
