"""Reading header values as mail really writes them: RFC 5322 fields, RFC 2047, RFC 2231.

Every function here takes the *raw* header value as the parser stored it (a str holding ASCII
plus raw 8-bit bytes as surrogate escapes, folding line breaks included), never raises, and
returns text fit for a database column (see :func:`mailboxes.charsets.storable`), with what
went wrong described in plain words rather than raised.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_tz
from typing import NamedTuple
from urllib.parse import unquote_to_bytes

from mailboxes.charsets import UTF_8, decode_text, storable

# RFC 5322 section 2.1.1: a line is at most 998 characters, so no single-line field (Subject,
# a msg-id) can be longer; names are bounded for their database column.
MAX_LINE_LENGTH = 998
MAX_NAME_LENGTH = 255
_SHOWN_IN_DEFECT = 80


class HeaderText(NamedTuple):
    """Decoded header text and a description of what went wrong while decoding, or None."""

    text: str
    defect: str | None


def raw_bytes(raw: str) -> bytes:
    """Return the bytes the parser read for ``raw`` (8-bit bytes are surrogate escapes)."""
    return raw.encode("utf-8", "surrogateescape")


def unfold(raw: str) -> str:
    """RFC 5322 section 2.2.3: unfolding removes each CRLF that is followed by white space."""
    if "\n" not in raw and "\r" not in raw:
        return raw
    return _FOLD.sub("", raw)


_FOLD = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]+")


def single_line(text: str, limit: int = MAX_LINE_LENGTH) -> str:
    """Make ``text`` one storable line of at most ``limit`` characters.

    Control characters (stray CR and LF included) become one space; other white space, such
    as the ideographic space that Japanese subjects use, is kept as written.
    """
    text = _CONTROLS.sub(" ", storable(text)).strip()
    return text[:limit].rstrip() if len(text) > limit else text


# --- RFC 2047 encoded words ---------------------------------------------------------------

# RFC 2047 section 2, loosened as real mailers need: the charset may carry an RFC 2231
# language ("UTF-8*ja"), and the encoded text may hold white space where a mailer folded
# inside a word.
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,64})\?([bBqQ])\?([^?]*)\?=")


def decode_header_text(raw: str) -> HeaderText:
    """Decode an unstructured header value (RFC 2047 encoded words, raw 8-bit bytes).

    Adjacent encoded words in one charset are joined as bytes before decoding, because
    mailers split words in the middle of a multi-byte character (and ISO-2022-JP words in
    the middle of an escape sequence). White space between encoded words is dropped (RFC 2047
    section 6.2); text around them is decoded as raw 8-bit if it is not ASCII.
    """
    text = unfold(raw)
    if "=?" not in text:
        return _decode_literal(text)
    pieces: list[str] = []
    defects: list[str] = []
    pending_charset: str | None = None
    pending = bytearray()

    def flush() -> None:
        """Decode the bytes of the pending run of same-charset encoded words."""
        nonlocal pending_charset
        if pending_charset is not None:
            decoded = decode_text(bytes(pending), pending_charset)
            pieces.append(decoded.text)
            if decoded.defect:
                defects.append(decoded.defect)
            pending.clear()
            pending_charset = None

    position = 0
    for match in _ENCODED_WORD.finditer(text):
        between = text[position : match.start()]
        if between and not (pending_charset is not None and between.isspace()):
            flush()
            literal = _decode_literal(between)
            pieces.append(literal.text)
            if literal.defect:
                defects.append(literal.defect)
        charset = match[1].partition("*")[0].lower()
        if charset != pending_charset:
            flush()
            pending_charset = charset
        payload = raw_bytes(match[3])
        pending += _decode_b(payload) if match[2] in "bB" else _decode_q(payload)
        position = match.end()
    flush()
    if position < len(text):
        literal = _decode_literal(text[position:])
        pieces.append(literal.text)
        if literal.defect:
            defects.append(literal.defect)
    return HeaderText("".join(pieces), "; ".join(dict.fromkeys(defects)) or None)


def _decode_literal(text: str) -> HeaderText:
    """Decode header text outside encoded words: ASCII, or raw 8-bit bytes (RFC 6532 UTF-8,
    or the Shift_JIS and ISO-2022-JP that old Japanese mailers write unencoded)."""
    if "\x1b" not in text:
        if text.isascii():
            return HeaderText(text, None)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            pass  # surrogate escapes: raw bytes still to decode
        else:
            return HeaderText(text, None)  # already decoded (see parse_addresses)
    return decode_raw_header(raw_bytes(text))


def decode_raw_header(data: bytes) -> HeaderText:
    """Decode raw 8-bit header bytes; UTF-8 is no defect (RFC 6532), other guesses are."""
    decoded = decode_text(data, None)
    return HeaderText(decoded.text, None if decoded.codec == UTF_8 else decoded.defect)


def _decode_b(payload: bytes) -> bytes:
    """Decode RFC 2047 "B" text; missing padding is added and stray characters skipped."""
    payload = payload.translate(None, b" \t\r\n")
    try:
        return binascii.a2b_base64(payload + b"=" * (-len(payload) % 4))
    except binascii.Error:
        # Only a length of 4n+1 alphabet characters is undecodable; drop the dangling one.
        letters = re.sub(rb"[^A-Za-z0-9+/]", b"", payload)
        letters = letters[: len(letters) - len(letters) % 4]
        return binascii.a2b_base64(letters) if letters else b""


def _decode_q(payload: bytes) -> bytes:
    """Decode RFC 2047 "Q" text: quoted-printable where "_" stands for a space."""
    return binascii.a2b_qp(payload, header=True)


# --- Message ids (RFC 5322 section 3.6.4) ---------------------------------------------------

_MSG_ID = re.compile(r"<([^<>]*)>")
_NOT_IN_MSG_ID = re.compile(r"[\s\x00-\x1f\x7f]+")


def parse_message_ids(raw: str | None) -> list[str]:
    """Return the msg-ids in ``raw``, without angle brackets, in order.

    Mailers that omit the brackets are tolerated when the token looks like an id (has an @),
    so that the prose some put in In-Reply-To ("Your message of ...") is not taken for one.
    """
    if not raw:
        return []
    text = _decode_literal(unfold(raw)).text
    found = _MSG_ID.findall(text)
    if not found:
        found = [token for token in text.split() if "@" in token]
    ids = []
    for candidate in found:
        cleaned = storable(_NOT_IN_MSG_ID.sub("", candidate))[:MAX_LINE_LENGTH]
        if cleaned:
            ids.append(cleaned)
    return ids


# --- Date (RFC 5322 section 3.3) -----------------------------------------------------------


def parse_date(raw: str | None) -> tuple[datetime | None, str | None]:
    """Return the aware datetime in ``raw`` and None, or None and what was wrong.

    A date without a zone, or with RFC 5322's "-0000" (zone unknown), is taken as UTC.
    """
    if raw is None:
        return None, "the message has no Date header"
    text = single_line(_decode_literal(unfold(raw)).text)
    try:
        parsed = parsedate_tz(text)
    except (ValueError, IndexError, TypeError, OverflowError):  # older Pythons raised here
        parsed = None
    unreadable = f"unreadable Date header {text[:_SHOWN_IN_DEFECT]!r}"
    if parsed is None:
        return None, unreadable
    offset = parsed[9]
    try:
        zone = UTC if offset is None else timezone(timedelta(seconds=offset))
        return datetime(*parsed[:6], tzinfo=zone), None
    except (ValueError, OverflowError):  # 31 February, year 0, a zone beyond ±24 hours
        return None, unreadable


# --- Parameters (RFC 2045 section 5.1, RFC 2231) -------------------------------------------

# A parameter's value is a quoted-string (an unterminated one runs to the end) or anything up
# to the next ";" (unquoted file names with spaces are common).
_PARAMETER = re.compile(r';\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;]*)', re.DOTALL)
# RFC 2231 sections 3 and 4: name*N for continuations, a trailing * for charset'lang'%XX.
_EXTENDED_NAME = re.compile(r"([^*]+)(?:\*([0-9]{1,3}))?(\*)?")
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


@dataclass(frozen=True)
class ParameterizedHeader:
    """A Content-Type or Content-Disposition value: the first token and its parameters."""

    value: str
    plain: dict[str, str] = field(default_factory=dict)
    extended: dict[str, HeaderText] = field(default_factory=dict)

    def param(self, name: str) -> str | None:
        """The parameter as a machine reads it (charset, boundary): RFC 2231 form first."""
        if name in self.extended:
            return self.extended[name].text
        return self.plain.get(name)

    def text(self, name: str) -> HeaderText | None:
        """The parameter as a person reads it (a file name): decoded, RFC 2231 form first.

        Plain values are decoded as RFC 2047 too: Japanese mailers send
        ``name="=?ISO-2022-JP?B?...?="``, which RFC 2047 section 5 forbids and everyone reads.
        """
        if name in self.extended:
            return self.extended[name]
        if name in self.plain:
            return decode_header_text(self.plain[name])
        return None


def parse_parameterized(raw: str | None) -> ParameterizedHeader:
    """Parse a MIME header value with parameters; names are lower-cased, the first one wins."""
    if not raw:
        return ParameterizedHeader("")
    text = unfold(raw)
    value = text.partition(";")[0].strip().lower()
    plain: dict[str, str] = {}
    sections: dict[str, dict[int, tuple[str, bool]]] = {}
    for match in _PARAMETER.finditer(text):
        name, content = match[1].lower(), match[2].strip()
        if content.startswith('"'):
            content = _QUOTED_PAIR.sub(
                r"\1", content[1:-1] if content.endswith('"') else content[1:]
            )
        extended = _EXTENDED_NAME.fullmatch(name) if "*" in name else None
        if extended is None:
            plain.setdefault(name, content)
            continue
        base, number, encoded = extended.groups()
        sections.setdefault(base, {}).setdefault(int(number or 0), (content, bool(encoded)))
    return ParameterizedHeader(
        value,
        plain,
        {name: _join_sections(parts) for name, parts in sections.items()},
    )


def _join_sections(sections: dict[int, tuple[str, bool]]) -> HeaderText:
    """RFC 2231: join name*0, name*1... in order; the first encoded one names the charset."""
    charset: str | None = None
    data = bytearray()
    for index, number in enumerate(sorted(sections)):
        content, encoded = sections[number]
        if encoded:
            if index == 0 and content.count("'") >= 2:
                charset, _language, content = content.split("'", 2)
            data += unquote_to_bytes(raw_bytes(content))
        else:
            data += raw_bytes(content)
    decoded = decode_text(bytes(data), charset or None)
    return HeaderText(decoded.text, decoded.defect)
