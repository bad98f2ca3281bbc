"""Raw RFC 5322 bytes in, a :class:`ParsedMessage` out: never raising, never mojibake.

:func:`parse_message` is what the import pipeline stores: header fields decoded (RFC 2047,
raw 8-bit, Japanese vendor charsets), correspondents normalised, the text and sanitised HTML
bodies, the attachments, and a plain-words list of everything that was wrong with the message.

Contract, which tests pin:

- It returns for any bytes at all. Each known failure (bad charsets, broken MIME, damaged
  base64, absurd nesting, NUL bytes, missing headers) is handled where it happens and noted
  in ``defects``; a catch-all around the whole is only the last resort, and logs loudly.
- Names do not disguise what they name: a display name that shows another address than its
  own is dropped (and noted in ``defects``), and file names lose bidirectional and
  zero-width characters.
- No str field holds NUL or a lone surrogate (PostgreSQL text columns refuse both), and
  lengths are bounded: subject and message ids 998 characters (RFC 5322 section 2.1.1),
  file names 255, names 255, snippet about 200.
- Parsing costs about what the stdlib's own ``email.message_from_bytes`` costs: the parser
  runs with the compat32 policy (the default policy's header objects are several times
  slower) and we decode the few headers we need ourselves.

The pieces live by role: :mod:`mailboxes.mime` (parser and walk), :mod:`mailboxes.headers`
(header fields), :mod:`mailboxes.address_lists` (correspondents), :mod:`mailboxes.charsets`
(bytes to text), :mod:`mailboxes.html` (sanitising, and the remote-image contract with the
viewer).
"""

from __future__ import annotations

import dataclasses
import logging
import mimetypes
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from mailboxes.address_lists import Correspondent, parse_addresses
from mailboxes.charsets import decode_text, storable
from mailboxes.headers import (
    MAX_LINE_LENGTH,
    HeaderText,
    decode_header_text,
    parse_date,
    parse_message_ids,
    single_line,
)
from mailboxes.html import html_to_text, sanitize_html
from mailboxes.mime import MimePart, describe_defects, message_bytes, parse_mime, walk_parts
from records.addresses import try_normalize_address

__all__ = ["Correspondent", "ParsedAttachment", "ParsedMessage", "parse_message"]

logger = logging.getLogger(__name__)

MAX_FILENAME_LENGTH = 255
MAX_ATTACHMENTS = 1000
MAX_REFERENCES = 100
MAX_DEFECTS = 100
SNIPPET_LENGTH = 200
_MAX_DEFECT_LENGTH = 300


@dataclass(frozen=True)
class ParsedAttachment:
    """An attached file, an inline image, or a contained message (as .eml)."""

    filename: str  # never empty, no directory part, at most 255 characters
    content_type: str  # lower-case type/subtype
    payload: bytes  # transfer encoding undone
    content_id: str  # without <>; "" if none
    is_inline: bool  # Content-Disposition inline, or a Content-ID and no disposition


@dataclass
class ParsedMessage:
    """Everything the hub stores about one message, decoded and bounded (module docstring)."""

    message_id: str  # without <>, "" if missing
    in_reply_to: str  # first msg-id, without <>
    references: list[str]  # msg-ids without <>, in order
    subject: str
    date: datetime | None  # aware (UTC if no zone); None if missing or unreadable
    sender: Correspondent | None  # From (first address)
    to: list[Correspondent]
    cc: list[Correspondent]
    bcc: list[Correspondent]
    reply_to: list[Correspondent]
    text_body: str  # text/plain body; if only HTML, a text rendering of it
    html_body: str  # sanitised with nh3; "" if none
    has_remote_images: bool  # html_body has data-remote-src images (see mailboxes.html)
    attachments: list[ParsedAttachment]
    defects: list[str]  # human-readable descriptions of everything that went wrong
    snippet: str  # first ~200 characters of text_body, white space collapsed
    # True only when the last-resort catch-all produced this result: every other field is
    # then empty, and the importer stores the message raw as "could not be parsed".
    unparsed: bool = False


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse ``raw`` (one message as RETR returned it, dot-unstuffed); never raises."""
    try:
        return _Parse(bytes(raw)).result()
    except Exception as exc:  # noqa: BLE001 -- the last resort that the contract promises
        logger.exception("parse_message failed on a %d-byte message", len(raw))
        return _unparsed(f"the message could not be parsed ({type(exc).__name__})")


class _Parse:
    """One run of parse_message: collects bodies, attachments and defects while walking."""

    def __init__(self, raw: bytes) -> None:
        """Parse the MIME structure of ``raw``; the fields are read by result()."""
        self.root, repairs = parse_mime(raw)
        self.defects: list[str] = list(repairs)
        self.plain: list[str] = []
        self.html: list[str] = []
        self.attachments: list[ParsedAttachment] = []
        self.attachments_dropped = 0

    def result(self) -> ParsedMessage:
        """Read the headers, walk the parts, and assemble the ParsedMessage."""
        root = self.root
        subject = self._header_text("Subject")
        message_ids = parse_message_ids(root.get("message-id"))
        if not message_ids:
            self.defects.append("the message has no Message-ID")
        references = parse_message_ids(root.get("references"))
        if len(references) > MAX_REFERENCES:
            # RFC 5322 section 3.6.4 lets a long References field be trimmed; the first id
            # (the thread's root) and the latest ones are what threading needs.
            references = references[:1] + references[-(MAX_REFERENCES - 1) :]
            self.defects.append(f"References trimmed to {MAX_REFERENCES} ids")
        date, date_defect = parse_date(root.get("date"))
        if date_defect:
            self.defects.append(date_defect)
        senders = self._addresses("From")
        if not senders and root.get("from") is None:
            self.defects.append("the message has no From header")
        for section, part in walk_parts(root):
            self._read_part(section, part)
        if self.attachments_dropped:
            self.defects.append(
                f"only the first {MAX_ATTACHMENTS} attachments were kept "
                f"({self.attachments_dropped} more are in the raw message)"
            )
        text_body = self._joined(self.plain)
        sanitized = sanitize_html("\n".join(self.html)) if self.html else None
        if sanitized and not text_body.strip():
            text_body = html_to_text(sanitized.html)
        return ParsedMessage(
            message_id=message_ids[0] if message_ids else "",
            in_reply_to=next(iter(parse_message_ids(root.get("in-reply-to"))), ""),
            references=references,
            subject=subject,
            date=date,
            sender=senders[0] if senders else None,
            to=self._addresses("To"),
            cc=self._addresses("Cc"),
            bcc=self._addresses("Bcc"),
            reply_to=self._addresses("Reply-To"),
            text_body=text_body,
            html_body=sanitized.html if sanitized else "",
            has_remote_images=sanitized.has_remote_images if sanitized else False,
            attachments=self.attachments,
            defects=_bounded(self.defects),
            snippet=_snippet(text_body),
        )

    # --- headers

    def _header_text(self, name: str) -> str:
        """The decoded, single-line value of unstructured header ``name`` ("" if absent)."""
        raw = self.root.get(name)
        if raw is None:
            return ""
        decoded = decode_header_text(raw)
        if decoded.defect:
            self.defects.append(f"{name}: {decoded.defect}")
        return single_line(decoded.text)

    def _addresses(self, name: str) -> list[Correspondent]:
        """The correspondents of address header ``name``; what was left out becomes defects."""
        # A header given twice (some mailers split long To lists) is read as one list.
        values = self.root.get_all(name) or []
        if name == "From":
            values = values[:1]
        correspondents, defects = parse_addresses(", ".join(values), name)
        self.defects.extend(defects)
        return [self._without_posing_name(name, person) for person in correspondents]

    def _without_posing_name(self, header: str, person: Correspondent) -> Correspondent:
        """``person``, without a display name that shows another address than the real one.

        '"ceo@client.example" <attacker@evil.example>' is how phishing mail passes for someone
        the reader knows: the page shows the name first. The real address is what is left.
        """
        shown = {
            try_normalize_address(found) or found for found in _ADDRESS_IN_NAME.findall(person.name)
        }
        if not shown - {person.address}:
            return person
        self.defects.append(f"{header}: a display name showing another address was dropped")
        return dataclasses.replace(person, name="")

    # --- parts

    def _read_part(self, section: str, part: MimePart) -> None:
        """Take one part as body text, an attachment or a contained message (RFC 2183, 2046)."""
        where = f"part {section}: " if section else ""
        self.defects.extend(where + description for description in describe_defects(part))
        maintype = part.get_content_maintype()
        if maintype == "multipart" and part.is_multipart():
            return  # its children are walked
        content_type = _content_type(part, maintype)
        if content_type != part.get_content_type():
            self.defects.append(f"{where}unreadable Content-Type; read as {content_type}")
        filename = self._filename(part, where)
        if maintype == "message":
            self._attach_message(part, where, filename)
            return
        disposition = part.disposition.value
        if maintype == "multipart" or (
            content_type in ("text/plain", "text/html")
            and disposition != "attachment"
            and not filename
        ):
            # A multipart without parts (no boundary) is kept as text: better searchable
            # than lost, and the defect says why it looks odd.
            self._read_text(part, where, is_html=content_type == "text/html")
            return
        payload, defects = part.body_bytes()
        self.defects.extend(where + defect for defect in defects)
        content_id = _content_id(part.get("content-id"))
        self._attach(
            ParsedAttachment(
                filename=filename or self._default_filename(content_type),
                content_type=content_type,
                payload=payload,
                content_id=content_id,
                is_inline=disposition == "inline" or (not disposition and bool(content_id)),
            )
        )

    def _read_text(self, part: MimePart, where: str, *, is_html: bool) -> None:
        """Decode a text/plain or text/html body part and keep it for the message body."""
        data, defects = part.body_bytes()
        self.defects.extend(where + defect for defect in defects)
        if not data.strip():
            return
        charset = part.content.param("charset")
        if not charset and is_html:
            charset = _meta_charset(data)
        decoded = decode_text(data, charset)
        if decoded.defect:
            self.defects.append(where + decoded.defect)
        text = decoded.text
        if "\x00" in text:
            self.defects.append(f"{where}NUL characters were removed from the text")
        (self.html if is_html else self.plain).append(storable(text))

    def _attach_message(self, part: MimePart, where: str, filename: str) -> None:
        """RFC 2046 section 5.2: a contained message is kept whole, as an .eml attachment.

        Other message/* parts (a bounce's delivery-status) are kept as text attachments.
        """
        payload, problem = message_bytes(part)
        if problem:
            self.defects.append(where + problem)
        content_type = _content_type(part, "message")
        is_message = content_type in ("message/rfc822", "message/global")
        if not filename and is_message:
            contained = part.get_payload()
            inner = contained[0] if isinstance(contained, list) and contained else None
            subject = ""
            if isinstance(inner, MimePart) and inner.get("subject") is not None:
                subject = _PATH_SEPARATORS.sub("_", decode_header_text(inner["subject"]).text)
            filename = _safe_filename(f"{single_line(subject, 100) or 'message'}.eml")
        self._attach(
            ParsedAttachment(
                filename=filename or f"{content_type.partition('/')[2]}.txt",
                content_type=content_type,
                payload=payload,
                content_id=_content_id(part.get("content-id")),
                is_inline=part.disposition.value == "inline",
            )
        )

    def _attach(self, attachment: ParsedAttachment) -> None:
        """Keep ``attachment`` unless MAX_ATTACHMENTS are already kept (then count it)."""
        if len(self.attachments) < MAX_ATTACHMENTS:
            self.attachments.append(attachment)
        else:
            self.attachments_dropped += 1

    def _filename(self, part: MimePart, where: str) -> str:
        """RFC 2183 filename, else RFC 2045 name (each RFC 2231 or RFC 2047), made safe."""
        found: HeaderText | None = part.disposition.text("filename")
        if found is None or not found.text.strip():
            found = part.content.text("name") or found
        if found is None:
            return ""
        if found.defect:
            self.defects.append(f"{where}file name: {found.defect}")
        return _safe_filename(found.text)

    def _default_filename(self, content_type: str) -> str:
        """A name for an attachment that has none: attachment-N plus the type's extension."""
        extension = mimetypes.guess_extension(content_type, strict=False) or ".bin"
        return f"attachment-{len(self.attachments) + 1}{extension}"

    @staticmethod
    def _joined(texts: list[str]) -> str:
        """Join text parts (Apple Mail splits a body around inline images); LF line ends."""
        text = "\n".join(texts)
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        return text


# RFC 6838 section 4.2: what a registered type or subtype name may hold.
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


def _content_type(part: MimePart, maintype: str) -> str:
    """The part's media type, or a safe default when the header holds no valid one."""
    content_type = part.get_content_type()
    if _MEDIA_TYPE.fullmatch(content_type):
        return content_type
    return "message/rfc822" if maintype == "message" else "application/octet-stream"


_META_CHARSET = re.compile(
    rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]{1,40})""", re.I
)


def _meta_charset(data: bytes) -> str | None:
    """The charset an HTML body declares in its own <meta>, when the MIME header is silent."""
    match = _META_CHARSET.search(data, 0, 4096)
    return match[1].decode("ascii") if match else None


def _content_id(raw: str | None) -> str:
    """RFC 2392 Content-ID without its angle brackets; "" if none."""
    if not raw:
        return ""
    text = single_line(decode_header_text(raw).text, MAX_LINE_LENGTH + 2).strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    return text[:MAX_LINE_LENGTH]


_PATH_SEPARATORS = re.compile(r"[/\\]")
# Something a reader takes for an e-mail address inside a display name (full-width "＠" too).
_ADDRESS_IN_NAME = re.compile(r"[^\s<>\"'@＠()]+[@＠][^\s<>\"'@＠()]+\.[^\s<>\"'@＠()]+")


def _safe_filename(name: str) -> str:
    """A file name without directories, control or invisible characters, at most 255 characters.

    Invisible characters are format characters (Unicode category Cf) and line or paragraph
    separators: a right-to-left override shows "invoice<RLO>fdp.exe" as "invoiceexe.pdf" on
    the message page, and zero-width ones hide a second extension. Truncation keeps a short
    extension, so that "履歴書.pdf" stays a PDF however long the stem.
    """
    name = "".join(_visible(char) for char in name)
    name = _PATH_SEPARATORS.split(single_line(name, 4 * MAX_FILENAME_LENGTH))[-1].strip()
    if name in (".", ".."):
        return ""
    if len(name) <= MAX_FILENAME_LENGTH:
        return name
    stem, dot, extension = name.rpartition(".")
    if dot and stem and len(extension) <= 16:
        return stem[: MAX_FILENAME_LENGTH - len(extension) - 1].rstrip() + "." + extension
    return name[:MAX_FILENAME_LENGTH].rstrip()


def _visible(char: str) -> str:
    """``char`` unless it is invisible: "" for a format character, " " for a line separator."""
    if char.isascii():
        return char
    category = unicodedata.category(char)
    if category == "Cf":
        return ""
    return " " if category in ("Zl", "Zp") else char


def _snippet(text: str) -> str:
    """The start of ``text`` on one line, white space collapsed, for message lists."""
    return " ".join(single_line(text[: SNIPPET_LENGTH * 4]).split())[:SNIPPET_LENGTH]


def _bounded(defects: list[str]) -> list[str]:
    """Defects without repeats, each storable and short, at most MAX_DEFECTS of them."""
    unique = list(dict.fromkeys(single_line(defect, _MAX_DEFECT_LENGTH) for defect in defects))
    if len(unique) > MAX_DEFECTS:
        unique = unique[: MAX_DEFECTS - 1] + [f"... and {len(unique) - MAX_DEFECTS + 1} more"]
    return unique


def _unparsed(defect: str) -> ParsedMessage:
    """What parse_message returns when even the last resort was needed: the raw is stored."""
    return ParsedMessage(
        message_id="",
        in_reply_to="",
        references=[],
        subject="",
        date=None,
        sender=None,
        to=[],
        cc=[],
        bcc=[],
        reply_to=[],
        text_body="",
        html_body="",
        has_remote_images=False,
        attachments=[],
        defects=[defect],
        snippet="",
        unparsed=True,
    )
