"""The MIME structure of a message: the stdlib parser, made total, and an iterative walk.

The stdlib ``email`` parser (compat32 policy, the fastest) does the splitting into parts. It is
wrapped so that nothing it meets can make it raise or lose data:

- header values come back exactly as read (``header_fetch_parse`` below), so that our own
  decoders in :mod:`mailboxes.headers` see the raw bytes, not a guess already made;
- parameters (``boundary``, ``charset``) are read by our RFC 2231 parser, because the stdlib's
  raises ``TypeError`` on ``boundary*=a; boundary*0=b`` -- inside the parser itself;
- transfer encodings are undone by :meth:`MimePart.body_bytes`, which keeps whatever part of a
  damaged base64 body decodes and says what it skipped;
- parts are walked with an explicit stack, never recursion, and a structure nested too deeply
  for the parser's own recursion is read headers-only.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator
from email import errors, feedparser
from email.message import Message
from email.parser import BytesParser
from email.policy import Compat32
from functools import cached_property
from io import BytesIO
from typing import Any

from mailboxes.headers import ParameterizedHeader, parse_parameterized

MAX_DEFECTS = 50


class _LineEndAtEnd:
    r"""The stdlib feed parser's ``NLCRE_eol`` (``(\r\n|\r|\n)\Z``: the line break that ends
    a string), with the same match objects, found by looking at the string's last two
    characters instead of scanning all of it.

    The parser searches a whole part's payload with it when the part ends: for a 1 MB
    attachment, 10 ms of regular-expression scanning, most of what parsing such a message
    cost (docs/benchmarks.md, Import). A match of ``\Z`` can only start in the last two
    positions, so searching from there finds the same one. Installed below, for every parse
    in this process (the semantics are the stdlib's own).
    """

    _pattern = re.compile(r"(\r\n|\r|\n)\Z")

    def search(self, text: str) -> re.Match[str] | None:
        return self._pattern.search(text, max(len(text) - 2, 0))


if getattr(feedparser, "NLCRE_eol", None) is not None:
    feedparser.NLCRE_eol = _LineEndAtEnd()  # type: ignore[assignment]


class _RawHeaderPolicy(Compat32):
    """compat32, except that a header value is returned exactly as the parser stored it.

    compat32 would wrap values holding 8-bit bytes in ``email.header.Header`` objects as
    "unknown-8bit"; we decode those bytes ourselves, smarter (see mailboxes.charsets).
    """

    def header_fetch_parse(self, name: str, value: str) -> str:  # type: ignore[override]
        """Return ``value`` unchanged: ASCII plus 8-bit bytes as surrogate escapes."""
        return value


class MimePart(Message):
    """One part of a parsed message; parameter reading and body decoding never raise."""

    def get_params(  # type: ignore[override]
        self, failobj: Any = None, header: str = "content-type", unquote: bool = True
    ) -> Any:
        """Like Message.get_params, with values read by our RFC 2231 parser (decoded str)."""
        value = self.get(header)
        if value is None:
            return failobj
        parsed = parse_parameterized(value)
        names = list(dict.fromkeys([*parsed.plain, *parsed.extended]))
        return [(parsed.value, ""), *((name, parsed.param(name)) for name in names)]

    def get_param(  # type: ignore[override]
        self,
        param: str,
        failobj: Any = None,
        header: str = "content-type",
        unquote: bool = True,
    ) -> Any:
        """Like Message.get_param; the stdlib's own parser and get_boundary() call this."""
        value = self.get(header)
        if value is None:
            return failobj
        found = parse_parameterized(value).param(param.lower())
        return failobj if found is None else found

    @cached_property
    def content(self) -> ParameterizedHeader:
        """The Content-Type header's parameters (RFC 2045 section 5)."""
        return parse_parameterized(self.get("content-type"))

    @cached_property
    def disposition(self) -> ParameterizedHeader:
        """The Content-Disposition header (RFC 2183); value "" when absent."""
        return parse_parameterized(self.get("content-disposition"))

    def body_bytes(self) -> tuple[bytes, list[str]]:
        """Return this leaf part's body with its transfer encoding undone, and what went wrong.

        RFC 2045 section 6: base64, quoted-printable, 7bit, 8bit, binary; x-uuencode too, as
        old mailers send it. An unknown encoding leaves the bytes as they are.
        """
        # Not get_payload(): for a body with 8-bit bytes it returns text decoded with the
        # declared charset and errors replaced, and we need the bytes to decode them better.
        payload = self._payload  # type: ignore[attr-defined]
        if isinstance(payload, bytes):
            data = payload
        elif isinstance(payload, str):
            data = payload.encode("ascii", "surrogateescape")
        else:
            return b"", []
        raw_encoding = self.get("content-transfer-encoding")
        encoding = _transfer_encoding(raw_encoding)
        if encoding in ("", "7bit", "8bit", "binary"):
            return data, []
        if encoding == "base64":
            return decode_base64(data)
        if encoding == "quoted-printable":
            return binascii.a2b_qp(data), []
        if encoding in ("x-uuencode", "uuencode", "x-uue", "uue"):
            return _decode_uu(data)
        return data, [f"unknown transfer encoding {encoding[:40]!r}; content kept as sent"]


def _transfer_encoding(raw: str | None) -> str:
    """The mechanism named by a Content-Transfer-Encoding value, lower-cased, comment-free."""
    if not raw:
        return ""
    # Bounded first: the comment pattern is quadratic on a long run of unclosed "(".
    words = re.sub(r"\([^)]*\)", " ", raw[:_MAX_ENCODING_LENGTH]).replace('"', " ").split()
    return words[0].lower() if words else ""


_MAX_ENCODING_LENGTH = 200
_MAX_BASE64_BLOCKS = 1000
_BASE64_TEXT = re.compile(rb"[A-Za-z0-9+/=]*")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]")
_PADDING_THEN_DATA = re.compile(rb"(?<==)(?=[A-Za-z0-9+/])")


def decode_base64(data: bytes) -> tuple[bytes, list[str]]:
    """Decode a base64 body, keeping whatever decodes (RFC 2045 section 6.8).

    Characters outside the alphabet are skipped (the RFC says to ignore them); blocks that a
    mailer concatenated after padding are each decoded; a dangling final character, which
    cannot encode a byte, is dropped.
    """
    compact = data.translate(None, b" \t\r\n")
    try:
        # Well-formed base64 (nearly all of it) decodes in one C call; strict mode refuses
        # anything the careful path below would repair, so both give the same bytes. The
        # careful path's regular expressions cost ~100 ms per megabyte of attachment.
        return binascii.a2b_base64(compact, strict_mode=True), []
    except binascii.Error:
        pass
    defects = []
    if not _BASE64_TEXT.fullmatch(compact):
        compact = _NOT_BASE64.sub(b"", compact)
        defects.append("base64 content held characters outside the alphabet, which were skipped")
    blocks = _PADDING_THEN_DATA.split(compact)
    if len(blocks) > _MAX_BASE64_BLOCKS:  # not concatenated encodings but "=" noise
        blocks = [compact.replace(b"=", b"")]
    decoded = bytearray()
    for block in blocks:
        letters = block.rstrip(b"=")
        if b"=" in letters:
            letters = letters.replace(b"=", b"")
        if len(letters) % 4 == 1:
            letters = letters[:-1]
            defects.append("base64 content ended in the middle of a byte; the rest was kept")
        decoded += binascii.a2b_base64(letters + b"=" * (-len(letters) % 4))
    return bytes(decoded), defects


def _decode_uu(data: bytes) -> tuple[bytes, list[str]]:
    """Decode a uuencoded body between its "begin" and "end" lines."""
    decoded = bytearray()
    inside = False
    damaged = False
    for line in data.splitlines():
        if not inside:
            inside = line.startswith(b"begin ")
            continue
        if line.strip() in (b"end", b"`"):
            if line.strip() == b"end":
                break
            continue
        try:
            decoded += binascii.a2b_uu(line)
        except binascii.Error:
            damaged = True
    return bytes(decoded), ["damaged uuencoded lines were skipped"] if damaged else []


# --- Parsing ------------------------------------------------------------------------------

_POLICY = _RawHeaderPolicy(message_factory=MimePart)
# For re-creating a contained message: CRLF line ends, and no re-folding of its headers.
_EML_POLICY = _POLICY.clone(linesep="\r\n", max_line_length=0)
_END_OF_HEADERS = re.compile(rb"\r?\n\r?\n")
_BARE_CR = re.compile(rb"\r(?!\n)")


def parse_mime(raw: bytes) -> tuple[MimePart, list[str]]:
    """Parse ``raw`` into its MIME tree; return the root part and the repairs made first."""
    raw, defects = _repair_header_block(raw)
    parser = BytesParser(policy=_POLICY)
    try:
        root = parser.parsebytes(raw)
    except RecursionError:
        # The stdlib parser recurses once per nested multipart and fails at about 900
        # levels; a legitimate message never nests more than a handful.
        root = parser.parsebytes(raw, headersonly=True)
        defects.append("the MIME parts are nested too deeply to read; only the headers were read")
    if not isinstance(root, MimePart):  # the policy guarantees it; this keeps mypy sure too
        raise TypeError("the parser did not use MimePart")
    return root, defects


def _repair_header_block(raw: bytes) -> tuple[bytes, list[str]]:
    """Remove NUL bytes from the top-level header block and replace bare CRs by spaces.

    RFC 5322 section 2.2 forbids CR and LF outside CRLF in a header, and the stdlib parser
    treats a bare CR as a line end, which would cut a header in two and push the headers that
    follow into the body. Mail that uses bare CR as its only line end (old Mac mail) is left
    to the parser, which understands it. NUL is forbidden in a header too (RFC 5322 section
    2.2: printable characters only); the stdlib parser takes a line whose field name holds one
    for the start of the body, so one NUL would hide every header after it (Message-ID, Date,
    Content-Type, and with them every attachment).
    """
    end = _END_OF_HEADERS.search(raw)
    head_end = end.start() if end else len(raw)
    head = raw[:head_end]
    defects = []
    if b"\x00" in head:
        head = head.replace(b"\x00", b"")
        defects.append("NUL bytes in the headers were removed")
    if b"\r" in head and b"\n" in head and _BARE_CR.search(head):
        head = _BARE_CR.sub(b" ", head)
        defects.append("bare carriage returns in the headers were read as spaces")
    if not defects:
        return raw, []
    return head + raw[head_end:], defects


# --- Walking ------------------------------------------------------------------------------


def walk_parts(root: MimePart) -> Iterator[tuple[str, MimePart]]:
    """Yield every part in document order with its IMAP section number (RFC 3501 6.4.5).

    The root is "", its children "1", "2"..., theirs "1.1"... Contained message/rfc822
    messages are yielded as one part and not entered: they become .eml attachments. Walks
    with a stack, so no depth can exhaust Python's recursion limit.
    """
    stack: list[tuple[str, MimePart]] = [("", root)]
    while stack:
        section, part = stack.pop()
        yield section, part
        if part.get_content_maintype() == "multipart" and part.is_multipart():
            children = part.get_payload()
            prefix = f"{section}." if section else ""
            stack.extend(
                (f"{prefix}{number}", child)
                for number, child in reversed(list(enumerate(children, start=1)))
                if isinstance(child, MimePart)
            )


def message_bytes(part: MimePart) -> tuple[bytes, str | None]:
    """Serialise a contained message/* part's content back to bytes, for an .eml attachment.

    The stdlib generator re-folds headers and can fail on structures the parser accepted;
    those failures are reported, not raised, and yield empty bytes.
    """
    payload = part.get_payload()
    if not isinstance(payload, list):
        data, _ = part.body_bytes()
        return data, None
    out = BytesIO()
    try:
        for contained in payload:
            if isinstance(contained, Message):
                out.write(contained.as_bytes(policy=_EML_POLICY))
    except (errors.MessageError, RecursionError, UnicodeError, LookupError, ValueError) as exc:
        return b"", f"the attached message could not be re-created ({type(exc).__name__})"
    data = out.getvalue()
    # RFC 2046 section 5.2.1 allows only 7bit, 8bit or binary here, but some mailers encode
    # the contained message anyway; the parser then read the encoded text as a message.
    encoding = _transfer_encoding(part.get("content-transfer-encoding"))
    if encoding == "base64":
        # Base64 lines hold no ":", so the parser saw no headers: ``data`` is the encoded text.
        data, _ = decode_base64(data)
    elif encoding == "quoted-printable":
        data = binascii.a2b_qp(data)
    return data, None


# --- Describing defects -------------------------------------------------------------------

_DEFECT_DESCRIPTIONS: dict[type[errors.MessageDefect], str] = {
    errors.NoBoundaryInMultipartDefect: (
        "a multipart section names no boundary, so its parts could not be told apart; "
        "it was read as text"
    ),
    errors.StartBoundaryNotFoundDefect: (
        "the boundary of a multipart section never appears; it was read as text"
    ),
    errors.CloseBoundaryNotFoundDefect: (
        "a multipart section has no closing boundary; the parts up to the end were kept"
    ),
    errors.FirstHeaderLineIsContinuationDefect: "the first header line is a continuation line",
    errors.MisplacedEnvelopeHeaderDefect: "a 'From ' envelope line appears among the headers",
    errors.MissingHeaderBodySeparatorDefect: (
        "a line among the headers is not a header; it and what follows were read as the body"
    ),
    errors.MultipartInvariantViolationDefect: "a multipart section has no parts",
    errors.InvalidMultipartContentTransferEncodingDefect: (
        "a multipart section declares a transfer encoding other than 7bit, 8bit or binary"
    ),
    errors.InvalidHeaderDefect: "a header line is malformed",
}


def describe_defects(part: MimePart) -> list[str]:
    """The stdlib parser's findings about ``part``, in plain words, at most MAX_DEFECTS."""
    descriptions = []
    for defect in part.defects[:MAX_DEFECTS]:
        description = _DEFECT_DESCRIPTIONS.get(type(defect))
        if description is None:
            words = re.sub(r"(?<!^)(?=[A-Z])", " ", type(defect).__name__.removesuffix("Defect"))
            description = words.lower() or "malformed MIME structure"
        descriptions.append(description)
    return descriptions
