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
from email.utils import getaddresses, parsedate_tz
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import unquote_to_bytes

from mailboxes.charsets import UTF_8, decode_text, storable
from records.addresses import try_normalize_address

# RFC 5322 section 2.1.1: a line is at most 998 characters, so no single-line field (Subject,
# a msg-id) can be longer; names are bounded for their database column.
MAX_LINE_LENGTH = 998
MAX_NAME_LENGTH = 255
MAX_ADDRESSES_PER_HEADER = 1000
_SHOWN_IN_DEFECT = 80


class HeaderText(NamedTuple):
    """Decoded header text and a description of what went wrong while decoding, or None."""

    text: str
    defect: str | None


@dataclass(frozen=True)
class Correspondent:
    """One mailbox from an address header: display name and normalised address."""

    name: str
    address: str


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
    return _decode_raw(raw_bytes(text))


def _decode_raw(data: bytes) -> HeaderText:
    """Decode raw header bytes; UTF-8 is no defect (RFC 6532 allows it), other guesses are."""
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


# --- Addresses (RFC 5322 section 3.4) ------------------------------------------------------


def parse_addresses(raw: str | None, header: str) -> tuple[list[Correspondent], list[str]]:
    """Return the correspondents in address header ``header`` and the entries left out.

    Addresses are normalised with :func:`records.addresses.try_normalize_address`; an entry
    that is not an address (a group name, "undisclosed-recipients:;" aside) is left out of the
    list and described in the second value. Display names may be encoded words, even inside
    quotes (not RFC 2047, but what mailers send), or raw 8-bit text.
    """
    if not raw:
        return [], []
    text = unfold(raw)
    correspondents: list[Correspondent] = []
    defects: list[str] = []
    seen: set[str] = set()
    if not text.isascii() or "\x1b" in text:
        # Raw Shift_JIS can hold "@" or "\\" as a second byte, and raw ISO-2022-JP has "(" in
        # its escapes: decode the raw bytes before the address grammar sees them. Encoded
        # words are ASCII and stay as they are, to be decoded per display name.
        decoded = _decode_raw(raw_bytes(text))
        text = decoded.text
        if decoded.defect:
            defects.append(f"{header}: {decoded.defect}")
    for name, address in _split_addresses(text):
        if not address:
            if name and not name.endswith(":"):
                defects.append(f"{header}: ignored {_shown(name)}, which has no address")
            continue
        normalised = _address_text(address)
        if normalised is None:
            defects.append(f"{header}: ignored {_shown(address)}, which is not an email address")
            continue
        if normalised in seen:
            continue
        if len(correspondents) == MAX_ADDRESSES_PER_HEADER:
            defects.append(f"{header}: only the first {MAX_ADDRESSES_PER_HEADER} addresses kept")
            break
        seen.add(normalised)
        display = decode_header_text(name)
        if display.defect:
            defects.append(f"{header}: {display.defect}")
        correspondents.append(Correspondent(single_line(display.text, MAX_NAME_LENGTH), normalised))
    return correspondents, defects


# Lists of "name <addr>" and bare addresses, with nothing that needs RFC 5322's full grammar
# (quoted strings, comments, groups, escapes): most headers, read without the stdlib's slow
# tokenizer. Anything else goes to email.utils.getaddresses.
# (Each part of the pattern consumes what the next cannot, so it runs in linear time.)
_SIMPLE_ENTRY = re.compile(r"([^<>]*)<([^<>]*)>\s*|\s*([^<>\s]+)\s*")
_NEEDS_FULL_GRAMMAR = re.compile(r'["()\\:;]')
_WHITE_SPACE = re.compile(r"\s+")


def _split_addresses(text: str) -> list[tuple[str, str]]:
    """(display name, addr-spec) pairs of an address list, as email.utils.getaddresses gives."""
    if not _NEEDS_FULL_GRAMMAR.search(text):
        pairs = []
        for entry in text.split(","):
            if not entry.strip():
                continue
            match = _SIMPLE_ENTRY.fullmatch(entry)
            if match is None or (match[2] is not None and len(match[2].split()) > 1):
                break
            if match[3] is not None:
                pairs.append(("", match[3]))
            else:
                pairs.append((_WHITE_SPACE.sub(" ", match[1]).strip(), match[2].strip()))
        else:
            return pairs
    if text.count("(") > _MAX_COMMENT_DEPTH and _comment_depth(text) > _MAX_COMMENT_DEPTH:
        # The stdlib reads nested comments recursively and raises RecursionError on a few
        # hundred "("; no real header nests them, so read the parentheses as spaces.
        text = text.replace("(", " ").replace(")", " ")
    return getaddresses([text])


_MAX_COMMENT_DEPTH = 20


def _comment_depth(text: str) -> int:
    """How deeply RFC 5322 comments nest in ``text`` (quoted strings are not told apart)."""
    depth = deepest = 0
    for character in text:
        if character == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif character == ")" and depth:
            depth -= 1
    return deepest


def _address_text(address: str) -> str | None:
    """Normalise an addr-spec; 8-bit bytes must be UTF-8 (RFC 6532), or it is not an address."""
    if not address.isascii():
        try:
            address = raw_bytes(address).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return _normalized(address)


# IDNA normalisation is slow in pure Python, and every message repeats the same few addresses
# (the mailbox's own, colleagues', the candidate's); try_normalize_address is a pure function.
_normalized = lru_cache(maxsize=4096)(try_normalize_address)


def _shown(raw: str) -> str:
    """A short, storable rendering of a raw value for a defect message."""
    return repr(single_line(_decode_literal(raw).text, _SHOWN_IN_DEFECT))


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
