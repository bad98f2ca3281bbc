"""Address headers (From, To, Cc, Bcc, Reply-To) read into normalised correspondents.

RFC 5322 section 3.4 is read here by a small iterative tokenizer rather than
``email.utils.getaddresses``, which recurses once per nested comment or group and so raises
``RecursionError`` on a header of a few hundred "(" or "a:" -- inside what must never raise.
The reading is lenient the way mail clients are: an unterminated quote or angle bracket runs
to the end, encoded words count even inside quotes, and raw 8-bit names are decoded first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from mailboxes.headers import (
    MAX_NAME_LENGTH,
    decode_header_text,
    decode_raw_header,
    raw_bytes,
    single_line,
    unfold,
)
from records.addresses import try_normalize_address

MAX_ADDRESSES_PER_HEADER = 1000
_SHOWN_IN_DEFECT = 80


@dataclass(frozen=True)
class Correspondent:
    """One mailbox from an address header: display name and normalised address."""

    name: str
    address: str


def parse_addresses(raw: str | None, header: str) -> tuple[list[Correspondent], list[str]]:
    """Return the correspondents in address header ``header`` and what was left out.

    Addresses are normalised with :func:`records.addresses.try_normalize_address` and each
    appears once; an entry that is not an address is left out of the list and described in
    the second value (group names such as "undisclosed-recipients:;" are no defect).
    """
    if not raw:
        return [], []
    text = unfold(raw)
    correspondents: list[Correspondent] = []
    defects: list[str] = []
    seen: set[str] = set()
    if not text.isascii() or "\x1b" in text:
        # Raw Shift_JIS can hold "@" or "\" as a second byte, and raw ISO-2022-JP has "(" in
        # its escapes: decode the raw bytes before the grammar sees them. Encoded words are
        # ASCII and stay as they are, to be decoded per display name.
        decoded = decode_raw_header(raw_bytes(text))
        text = decoded.text
        if decoded.defect:
            defects.append(f"{header}: {decoded.defect}")
    for name, address in split_address_list(text):
        normalised = _normalized_address(address)
        if normalised is None:
            shown = repr(single_line(address or name, _SHOWN_IN_DEFECT))
            defects.append(f"{header}: ignored {shown}, which is not an email address")
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


def _normalized_address(address: str) -> str | None:
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

# --- RFC 5322 section 3.4 -----------------------------------------------------------------

_TOKEN = re.compile(
    r'"((?:[^"\\]|\\.)*)"?'  # 1: a quoted-string (an unterminated one runs to the end)
    r"|([<>,;:()])"  # 2: a special that gives the list its structure
    r"|\s+"  # white space, which only separates
    r'|([^\s"<>,;:()]+)',  # 3: an atom, a dot-atom, an addr-spec, anything else
    re.DOTALL,
)
_COMMENT_PART = re.compile(r"\\.|[()]", re.DOTALL)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


class _Entry:
    """The parts of one address-list entry while it is being read."""

    def __init__(self) -> None:
        """Start an empty entry."""
        self.words: list[str] = []  # the display name, or the addr-spec when there is no <>
        self.comments: list[str] = []
        self.angle: list[str] | None = None  # inside <...>
        self.address: str | None = None  # what <...> held

    def pair(self) -> tuple[str, str] | None:
        """(display name, addr-spec), or None for an empty entry (",," or a group's end)."""
        if self.angle is not None:  # an unterminated "<"
            self.address = "".join(self.angle)
        if self.address is not None:
            # RFC 5322 section 4.4 obs-route: "<@relay,@relay:user@host>" means user@host.
            address = self.address.strip().rpartition(":")[2]
            return " ".join(self.words) or " ".join(self.comments), address
        if self.words:
            # A bare addr-spec; an old-style "user@host (Name)" names it in the comment.
            return " ".join(self.comments), " ".join(self.words)
        return None


def split_address_list(text: str) -> list[tuple[str, str]]:
    """The (display name, addr-spec) pairs of an address list, in order; never recurses.

    Names are returned undecoded (encoded words intact); comments are dropped except as the
    name of an entry that has no other; group names are dropped and their members kept.
    """
    pairs: list[tuple[str, str]] = []
    entry = _Entry()
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:  # cannot happen: every character starts some token
            break
        position = match.end()
        quoted, special, atom = match.group(1, 2, 3)
        if match[0].startswith('"'):
            word = _QUOTED_PAIR.sub(r"\1", quoted or "")
            (entry.words if entry.angle is None else entry.angle).append(word)
        elif atom is not None:
            (entry.words if entry.angle is None else entry.angle).append(atom)
        elif special == "(":
            comment, position = _read_comment(text, match.start())
            entry.comments.append(comment)
        elif special == "<" and entry.angle is None:
            entry.angle = []
        elif special == ">" and entry.angle is not None:
            entry.address, entry.angle = "".join(entry.angle), None
        elif entry.angle is not None and special in (",", ":", ";"):
            entry.angle.append(special)  # part of an obs-route
        elif special in (",", ";"):
            found = entry.pair()
            if found is not None:
                pairs.append(found)
            entry = _Entry()
        elif special == ":":
            entry = _Entry()  # "group name:" -- the members follow
    found = entry.pair()
    if found is not None:
        pairs.append(found)
    return pairs


def _read_comment(text: str, start: int) -> tuple[str, int]:
    """Read the comment that opens at ``start``: its text and the position after it.

    Nesting is counted, not recursed into; an unclosed comment runs to the end.
    """
    depth = 0
    for part in _COMMENT_PART.finditer(text, start):
        if part[0] == "(":
            depth += 1
        elif part[0] == ")":
            depth -= 1
            if depth == 0:
                return text[start + 1 : part.start()], part.end()
    return text[start + 1 :], len(text)
