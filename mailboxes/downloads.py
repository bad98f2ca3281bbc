"""Serving stored mail content: attachments, inline images and a message's raw source.

The callers (``mailboxes.reading_views``) have already found the row through the visibility
rule; this module only makes the response safe whatever the content: a file name that cannot
name another path or a device, ``Content-Disposition: attachment`` (RFC 6266, with a UTF-8
``filename*`` and an ASCII fallback), ``X-Content-Type-Options: nosniff`` and a policy that
lets nothing run should a browser render it anyway.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Iterator
from urllib.parse import quote

from django.core import signing
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.utils.cache import patch_cache_control

from mailboxes.charsets import decode_text
from mailboxes.mailstore import raw_read
from mailboxes.models import Attachment, Message

FALLBACK_NAME = "attachment"
MAX_FILENAME_BYTES = 200  # file systems allow 255 bytes; leave room for "(1)" and the like
# Windows device names, reserved with any extension ("CON.txt", "com1.tar.gz").
_RESERVED_NAMES = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"} | {
    f"{device}{number}" for device in ("COM", "LPT") for number in "0123456789¹²³"
}
# Path separators and what Windows forbids in a name.
_FORBIDDEN = re.compile(r'[<>:"/\\|?*]')
# Controls (NUL, newlines), format characters (right-to-left override, which disguises
# "txt.exe" as "exe.txt"; zero-width characters), line and paragraph separators, surrogates.
_INVISIBLE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs"}
_MIME_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
_INLINE_IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"}

INLINE_TOKEN_SALT = "mailboxes.inline-image"  # noqa: S105 -- a signing namespace, not a secret
INLINE_TOKEN_MAX_AGE = 6 * 60 * 60
RAW_DECODE_IN_MEMORY_LIMIT = 10 * 1024 * 1024
_RAW_CHUNK = 256 * 1024


def safe_filename(name: str) -> str:
    """``name`` as a harmless file name: no directory part, no control or invisible
    characters, nothing Windows forbids, no device name, no leading dot, at most
    MAX_FILENAME_BYTES bytes of UTF-8 (the extension kept); "attachment" if nothing is left.

    Compatibility forms count as what they fold to (NFKC): a full-width "／" or "ＣＯＮ" is
    harmless to a file system, but tools that normalise names (and our own ASCII fallback in
    attachment_disposition) would turn them into a separator or a device name.
    """
    name = unicodedata.normalize("NFC", name)
    name = "".join(ch for ch in name if unicodedata.category(ch) not in _INVISIBLE_CATEGORIES)
    name = re.split(r"[/\\]", name)[-1]  # the last path part, for either separator
    name = "".join(_harmless_character(ch) for ch in name).strip(" .")
    stem = unicodedata.normalize("NFKC", name.split(".", 1)[0]).strip()
    if stem.upper() in _RESERVED_NAMES:
        name = f"_{name}"
    return _shorten(name) or FALLBACK_NAME


def _harmless_character(char: str) -> str:
    """``char``, or "_" when it (or what it folds to under NFKC) is a separator or forbidden."""
    if char.isascii():
        return "_" if _FORBIDDEN.match(char) else char
    return "_" if _FORBIDDEN.search(unicodedata.normalize("NFKC", char)) else char


def _shorten(name: str) -> str:
    if len(name.encode("utf-8")) <= MAX_FILENAME_BYTES:
        return name
    stem, dot, extension = name.rpartition(".")
    if not dot or len(extension) > 16:
        stem, extension = name, ""
    suffix = f".{extension}" if extension else ""
    budget = MAX_FILENAME_BYTES - len(suffix.encode("utf-8"))
    stem = stem.encode("utf-8")[:budget].decode("utf-8", "ignore")
    return (stem.rstrip(" .") or FALLBACK_NAME) + suffix


def attachment_disposition(filename: str) -> str:
    """``Content-Disposition: attachment`` for an already safe ``filename`` (RFC 6266: an
    ASCII ``filename`` for old clients and the exact name as RFC 5987 ``filename*``)."""
    ascii_name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r'[^\x20-\x7e]|["\\%;]', "_", ascii_name)
    stem, dot, extension = ascii_name.rpartition(".")
    if not dot:
        stem, extension = ascii_name, ""
    if not stem.strip("_ "):
        ascii_name = FALLBACK_NAME + (f".{extension}" if extension else "")
    # Folding can make what was harmless in ``filename`` harmful again ("ＣＯＮ" becomes
    # "CON", "．．／" becomes "../"), so the ASCII name is made safe on its own.
    ascii_name = safe_filename(ascii_name)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def safe_content_type(value: str) -> str:
    value = value.strip().lower()
    return value if _MIME_TYPE.fullmatch(value) else "application/octet-stream"


def _harden(response: HttpResponse | StreamingHttpResponse) -> None:
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    patch_cache_control(response, private=True)


def attachment_response(attachment: Attachment) -> FileResponse:
    """The attachment's content as a download."""
    response = FileResponse(
        attachment.blob.file.open("rb"), content_type=safe_content_type(attachment.content_type)
    )
    # Set after construction: FileResponse names the download after the blob's storage path.
    response["Content-Disposition"] = attachment_disposition(safe_filename(attachment.filename))
    _harden(response)
    return response


def is_inline_image(attachment: Attachment) -> bool:
    """Whether the attachment may be served to an <img> in the frame (raster images only)."""
    return safe_content_type(attachment.content_type) in _INLINE_IMAGE_TYPES


def inline_image_token(*, attachment_id: int, user_id: int) -> str:
    """A signed, expiring token naming the reader for whom the frame shows this image."""
    return signing.dumps([attachment_id, user_id], salt=INLINE_TOKEN_SALT)


def inline_image_reader(*, token: str, attachment_id: int) -> int | None:
    """The user id a valid token for ``attachment_id`` names, or None."""
    try:
        signed_attachment, user_id = signing.loads(
            token, salt=INLINE_TOKEN_SALT, max_age=INLINE_TOKEN_MAX_AGE
        )
    except (signing.BadSignature, ValueError, TypeError):
        return None
    return int(user_id) if signed_attachment == attachment_id else None


def raw_source_response(message: Message) -> HttpResponse | StreamingHttpResponse:
    """The message as it arrived, as UTF-8 plain text.

    Decoded leniently: up to RAW_DECODE_IN_MEMORY_LIMIT with ``decode_text`` (8-bit Japanese
    and mislabelled text read right), larger messages streamed as UTF-8 with U+FFFD for what
    does not decode, so a 50 MB message never sits in memory twice.
    """
    name = message.raw.name
    size = message.raw_size or default_storage.size(name)
    response: HttpResponse | StreamingHttpResponse
    if size <= RAW_DECODE_IN_MEMORY_LIMIT:
        text = decode_text(raw_read(name), None).text
        response = HttpResponse(text, content_type="text/plain; charset=utf-8")
    else:
        response = StreamingHttpResponse(
            _utf8_chunks(name), content_type="text/plain; charset=utf-8"
        )
    _harden(response)
    return response


def _utf8_chunks(name: str) -> Iterator[bytes]:
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    with default_storage.open(name, "rb") as handle:
        while chunk := handle.read(_RAW_CHUNK):
            yield decoder.decode(chunk).encode("utf-8")
    yield decoder.decode(b"", final=True).encode("utf-8")
