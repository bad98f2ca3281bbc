"""Raw messages and attachment contents, stored through Django's storage API by content hash.

Names derive from the SHA-256, so storing the same bytes twice writes one file, and a file
written by a transaction that then rolled back is simply reused by the retry. (Such a file is
unreferenced until then; it is never shown, because every read goes through a database row.)
"""

from __future__ import annotations

import hashlib

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from mailboxes.models import StoredBlob


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _store(prefix: str, digest: str, suffix: str, data: bytes) -> str:
    name = f"{prefix}/{digest[:2]}/{digest[2:4]}/{digest}{suffix}"
    if not default_storage.exists(name):
        stored = default_storage.save(name, ContentFile(data))
        # Another writer may have stored the same content between exists() and save(); the
        # storage then picks another name, which holds the same bytes: either serves.
        return stored
    return name


def raw_store(*, raw: bytes, digest: str) -> str:
    """Store a message's raw bytes; return the storage name for Message.raw."""
    return _store("raw", digest, ".eml", raw)


def blob_store(*, payload: bytes) -> StoredBlob:
    """The StoredBlob for ``payload``, written once per content hash."""
    digest = content_hash(payload)
    blob = StoredBlob.objects.filter(sha256=digest).first()
    if blob is not None:
        return blob
    name = _store("blobs", digest, "", payload)
    try:
        with transaction.atomic():
            return StoredBlob.objects.create(sha256=digest, size=len(payload), file=name)
    except IntegrityError:
        # A concurrent import of another mailbox stored the same content first.
        return StoredBlob.objects.get(sha256=digest)


def raw_read(name: str) -> bytes:
    with default_storage.open(name, "rb") as handle:
        return handle.read()
