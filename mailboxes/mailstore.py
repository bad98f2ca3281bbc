"""Raw messages and attachment contents, stored through Django's storage API by content hash.

Names derive from the SHA-256, so storing the same bytes twice writes one file, and a file
written by a transaction that then rolled back is simply reused by the retry. (Such a file is
unreferenced until then; it is never shown, because every read goes through a database row.)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from django.core.files.base import ContentFile
from django.core.files.storage import Storage, default_storage

if TYPE_CHECKING:
    from mailboxes.models import StoredBlob


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _store(
    prefix: str, digest: str, suffix: str, data: bytes, storage: Storage | None = None
) -> str:
    # One level of 256 folders, as git's object store: two levels (65,536 folders) made nearly
    # every message of a first import create a folder, which costs as much as the file itself
    # (bench/ingest.py). Names already stored keep their old paths: each row holds its name.
    storage = default_storage if storage is None else storage
    name = f"{prefix}/{digest[:2]}/{digest}{suffix}"
    if storage.exists(name):
        if storage.size(name) == len(data):
            return name
        # A worker killed while writing this file left it short, often empty (the storage
        # writes in place, not through a rename). Reusing it would commit a message whose raw
        # bytes are cut off, and then delete the only whole copy from the POP3 server (seen
        # by bench/crash.py). Write it again.
        storage.delete(name)
    stored = storage.save(name, ContentFile(data))
    # Another writer may have stored the same content between exists() and save(); the
    # storage then picks another name, which holds the same bytes: either serves.
    return stored


def raw_store(*, raw: bytes, digest: str, storage: Storage | None = None) -> str:
    """Store a message's raw bytes; return the storage name for Message.raw.

    ``storage``: the default storage unless given (the parser process passes its own
    FileSystemStorage of the same folder: it has no Django settings of its own)."""
    return _store("raw", digest, ".eml", raw, storage)


def files_durable(*, names: Iterable[str], storage: Storage | None = None) -> int:
    """fsync stored files and the folders that name them; return how many files.

    Call before committing rows that refer to the files. The storage writes a file and
    returns before the bytes reach the disk, so after a power cut or a kernel crash a
    committed row could name an empty or missing file, while the POP3 server has already
    deleted the only other copy. On a file system a file's data is durable after fsync on the
    file, and its name after fsync on its folder (POSIX does not promise that one implies the
    other); each folder is synced once, whatever the number of files in it, and the folders
    above it up to the store's root too (a batch may have created them). A storage without
    local paths (S3) has stored the object durably when ``save`` returned: nothing to do.
    """
    storage = default_storage if storage is None else storage
    try:
        root = Path(storage.path(""))
    except NotImplementedError:
        return 0
    folders: set[Path] = set()
    count = 0
    for name in set(names):
        path = Path(storage.path(name))
        _fsync(path, os.O_RDONLY)
        count += 1
        folder = path.parent
        while folder not in folders and (folder == root or root in folder.parents):
            folders.add(folder)
            folder = folder.parent
    # Deepest first: a folder's own entry is in its parent.
    for folder in sorted(folders, key=lambda path: len(path.parts), reverse=True):
        _fsync(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    return count


def _fsync(path: Path, flags: int) -> None:
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def blob_store(*, payload: bytes) -> StoredBlob:
    """The StoredBlob for ``payload``, written once per content hash."""
    return blobs_store(payloads=[payload])[0]


def blobs_store(*, payloads: Sequence[bytes]) -> list[StoredBlob]:
    """The StoredBlob of each payload, in order; each content is written once.

    Three queries at most, however many payloads: the import stores a batch's attachments
    together. Call inside a transaction, so that rows and the rows that point at them commit
    together.
    """
    # Imported here, not at the top: the parser process writes raw files with this module
    # and runs without Django's app registry, so it must not import models.
    from mailboxes.models import StoredBlob

    if not payloads:
        return []
    digests = [content_hash(payload) for payload in payloads]
    found = {blob.sha256: blob for blob in StoredBlob.objects.filter(sha256__in=set(digests))}
    missing = {
        digest: payload
        for digest, payload in zip(digests, payloads, strict=True)
        if digest not in found
    }
    if missing:
        # ON CONFLICT DO NOTHING: a concurrent import of another mailbox may store the same
        # content first (PostgreSQL waits for its transaction); its row then serves both.
        written = [
            StoredBlob(sha256=digest, size=len(payload), file=_store("blobs", digest, "", payload))
            for digest, payload in missing.items()
        ]
        # Durable before the caller's transaction commits rows that point at them.
        files_durable(names=[blob.file.name for blob in written])
        StoredBlob.objects.bulk_create(written, ignore_conflicts=True)
        found.update(
            (blob.sha256, blob) for blob in StoredBlob.objects.filter(sha256__in=list(missing))
        )
    return [found[digest] for digest in digests]


def raw_read(name: str) -> bytes:
    with default_storage.open(name, "rb") as handle:
        return handle.read()
