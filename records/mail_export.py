"""A candidate's mail as an mbox, or a zip of the mbox and a manifest, written as a stream.

The generators yield the file piece by piece, one message in memory at a time, so a
StreamingHttpResponse sends a large history without building it first.

The mbox is "mboxrd": each message starts with a "From " line (envelope sender and date, as
``mailbox.mbox`` writes it) and ends with a blank line; inside a message every line that starts
with "From ", after any number of ">", gets one more ">". That is the stdlib's rule ("From "
becomes ">From ") made reversible: removing one ">" from each such line gives the stored bytes
back exactly, and ``mailbox.mbox`` reads the file as it is. The stored bytes are written as
they are, CRLF line ends included (the "From " lines end in LF, as the stdlib writes them).
"""

from __future__ import annotations

import csv
import io
import re
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from django.core.files.storage import default_storage
from django.db.models import QuerySet

from mailboxes.models import Message

MBOX_NAME = "mail.mbox"
MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS = [
    "number",
    "date_utc",
    "mailbox",
    "direction",
    "from",
    "subject",
    "message_id",
    "sha256",
    "size",
    "in_mbox",
]
_FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)
_ENVELOPE_SENDER = re.compile(r"[^\s\"<>]{1,254}")
_ITERATOR_CHUNK = 100


def mbox_quote(raw: bytes) -> bytes:
    """One more ">" before every line that starts with ">*From " (mboxrd)."""
    return _FROM_LINE.sub(rb">\1", raw)


def mbox_unquote(quoted: bytes) -> bytes:
    """The inverse of mbox_quote: one ">" less before every ">+From " line."""
    return re.sub(rb"^>(>*From )", rb"\1", quoted, flags=re.MULTILINE)


def _from_line(message: Message) -> bytes:
    # mailbox.mbox writes "From <sender> <asctime in UTC>"; a sender that is not one plain
    # token (or is missing) becomes MAILER-DAEMON, as there.
    sender = message.from_address if _ENVELOPE_SENDER.fullmatch(message.from_address) else ""
    when = time.asctime(message.sort_at.astimezone(UTC).timetuple())
    return f"From {sender or 'MAILER-DAEMON'} {when}\n".encode("ascii", "replace")


@dataclass
class ExportedMessage:
    message: Message
    mbox_bytes: bytes | None  # None: nothing stored to export (see note)
    note: str


def _read_raw(message: Message) -> tuple[bytes | None, str]:
    if not message.raw:
        return None, "no raw copy stored (too large: left on the server)"
    try:
        with default_storage.open(message.raw.name, "rb") as handle:
            raw = handle.read()
    except OSError:
        return None, "raw copy missing from the mail store"
    entry = _from_line(message) + mbox_quote(raw)
    if not entry.endswith(b"\n"):
        entry += b"\n"  # as mailbox.mbox does: a message ends with a line break
    return entry + b"\n", "yes"


def _exported(messages: QuerySet[Message]) -> Iterator[ExportedMessage]:
    rows = messages.select_related("mailbox").only(
        "pk",
        "raw",
        "raw_sha256",
        "raw_size",
        "sort_at",
        "from_address",
        "subject",
        "message_id",
        "direction",
        "mailbox__name",
        "mailbox__email_address",
    )
    for message in rows.iterator(chunk_size=_ITERATOR_CHUNK):
        data, note = _read_raw(message)
        yield ExportedMessage(message=message, mbox_bytes=data, note=note)


def mbox_stream(messages: QuerySet[Message]) -> Iterator[bytes]:
    """The mbox of ``messages``, one message per chunk."""
    for item in _exported(messages):
        if item.mbox_bytes is not None:
            yield item.mbox_bytes


class _Sink(io.RawIOBase):
    """A write-only, unseekable file: zipfile then writes data descriptors, so the archive can
    be sent as it is written; ``drain`` hands over what was written since the last call."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._parts.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


def _manifest_row(number: int, item: ExportedMessage) -> list[str]:
    message = item.message
    mailbox = message.mailbox
    return [
        str(number),
        message.sort_at.astimezone(UTC).isoformat(),
        f"{mailbox.name} <{mailbox.email_address}>" if mailbox else "",
        message.get_direction_display(),
        message.from_address,
        message.subject,
        message.message_id,
        message.raw_sha256,
        str(message.raw_size),
        item.note,
    ]


def _zip_entry_info(name: str, now: datetime) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=now.timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def zip_stream(messages: QuerySet[Message]) -> Iterator[bytes]:
    """A zip holding the mbox of ``messages`` and a manifest (CSV, UTF-8) of every message,
    including those with no stored copy."""
    now = datetime.now(UTC)
    sink = _Sink()
    manifest = io.StringIO()
    writer = csv.writer(manifest)
    writer.writerow(MANIFEST_COLUMNS)
    with zipfile.ZipFile(sink, mode="w") as archive:
        # force_zip64: the mbox's size is unknown when its header is written.
        with archive.open(_zip_entry_info(MBOX_NAME, now), mode="w", force_zip64=True) as mbox:
            for number, item in enumerate(_exported(messages), start=1):
                writer.writerow(_manifest_row(number, item))
                if item.mbox_bytes is not None:
                    mbox.write(item.mbox_bytes)
                yield sink.drain()
        archive.writestr(_zip_entry_info(MANIFEST_NAME, now), manifest.getvalue().encode("utf-8"))
    yield sink.drain()


def iter_nonempty(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Skip empty chunks (a WSGI server may take one for the end of the body)."""
    return (chunk for chunk in chunks if chunk)
