"""Turning the bytes of mail text into str without exceptions and without mojibake.

Mail declares its charset (MIME ``charset=``, RFC 2047 encoded words, RFC 2231 parameters), but
the declaration is often wrong or names what the sender *meant* rather than what it wrote:

- Japanese mail labelled ``ISO-2022-JP`` or ``Shift_JIS`` is usually written by Windows
  (Outlook, web forms) with Microsoft's supersets, CP50220 and CP932, which add the NEC row 13
  symbols (①, ㈱, Ⅲ) and the NEC/IBM extension kanji, and map ``～`` (U+FF5E) where the
  JIS table has ``〜`` (U+301C). CPython has CP932 but no CP50220, so ISO-2022-JP is decoded
  here by converting its JIS X 0208 runs to EUC-JP bytes (which is pure byte arithmetic) and
  decoding those with CPython's EUC-JP codec, falling back to CP932 (JIS→Shift_JIS arithmetic)
  for the vendor cells; the result matches what CP50220 gives.
- Labels are spelt in many ways (``SJIS``, ``x-sjis``, ``MS932``, ``"utf8"``) or invented
  (``x-unknown``), and 8-bit bytes turn up under ``us-ascii``.

:func:`decode_text` is the one entry point: it tries the candidates in an order that prefers a
lossless decoding (strict) and only then replaces characters, and it says when it had to
guess. :func:`storable` removes what PostgreSQL text columns refuse (NUL, lone surrogates).
"""

from __future__ import annotations

import codecs
import re
from functools import lru_cache
from typing import NamedTuple

# Our own decoders, named so that they can never collide with a Python codec name.
ISO_2022_JP = "x-recruitmail-iso-2022-jp"
EUC_JP = "x-recruitmail-euc-jp"
UTF_8 = "utf_8"

_ALIASES: dict[str, str] = {
    # Shift_JIS as written by Windows is CP932 (Shift_JIS plus NEC and IBM extensions);
    # decoding every Shift_JIS label with CP932 loses nothing, since CP932 is a superset.
    **dict.fromkeys(
        (
            "shift_jis shift-jis shiftjis sjis x-sjis s-jis ms932 ms_kanji ms-kanji cp932 "
            "windows-31j csshiftjis csWindows31J x-ms-cp932 ibm-943 ibm943 cp943"
        )
        .lower()
        .split(),
        "cp932",
    ),
    # Every ISO-2022-JP flavour goes to the superset decoder below (CP50220/1/2 are
    # Microsoft's names for the same 7-bit encoding with the CP932 repertoire).
    **dict.fromkeys(
        (
            "iso-2022-jp iso2022jp iso_2022_jp csiso2022jp iso-2022-jp-1 iso-2022-jp-2 "
            "iso-2022-jp-3 iso-2022-jp-2004 iso-2022-jp-ext jis x-jis cp50220 cp50221 cp50222 "
            "iso2022_jp iso2022_jp_1 iso2022_jp_2 iso2022_jp_3 iso2022_jp_2004 iso2022_jp_ext"
        ).split(),
        ISO_2022_JP,
    ),
    **dict.fromkeys(
        (
            "euc-jp eucjp euc_jp x-euc-jp x-euc cseucpkdfmtjapanese ujis cp51932 "
            "eucjp-ms euc-jp-ms eucjpms eucjp-win"
        ).split(),
        EUC_JP,
    ),
    **dict.fromkeys("utf-8 utf8 utf_8 unicode-1-1-utf-8 x-unicode20utf8".split(), UTF_8),
    # WHATWG Encoding: these labels mean windows-1252 in practice (Outlook writes € and
    # curly quotes under "iso-8859-1"); CP1252 agrees with Latin-1 on every printable byte.
    **dict.fromkeys(
        (
            "us-ascii ascii ansi_x3.4-1968 iso646-us csascii iso-8859-1 iso8859-1 latin1 latin_1 l1"
        ).split(),
        "cp1252",
    ),
    # Supersets that mailers use under the smaller names.
    **dict.fromkeys("gb2312 gbk x-gbk csgb2312 euc-cn".split(), "gb18030"),
    **dict.fromkeys("big5 x-big5 csbig5 cp950".split(), "big5hkscs"),
    **dict.fromkeys("ks_c_5601-1987 euc-kr euc_kr ks_c_5601 korean csksc56011987".split(), "cp949"),
    **dict.fromkeys("tis-620 iso-8859-11 iso8859-11".split(), "cp874"),
    **dict.fromkeys("iso-8859-9 iso8859-9".split(), "cp1254"),
}

# Codecs that Python can look up but that are not mail charsets: decoding with them would
# interpret backslash escapes or punycode, or always fail.
_NOT_MAIL_CHARSETS = frozenset(
    {"unicode_escape", "raw_unicode_escape", "punycode", "idna", "undefined", "mbcs", "oem"}
)
# Stateful 7-bit or wide encodings: ASCII bytes do not mean ASCII text in these.
_NOT_ASCII_COMPATIBLE = frozenset(
    "utf-7 hz iso2022_kr utf-16 utf-16-le utf-16-be utf-32 utf-32-le utf-32-be".split()
)
_MAX_LABEL_LENGTH = 40


class DecodedText(NamedTuple):
    """Text decoded from bytes, the codec that produced it, and what went wrong (or None)."""

    text: str
    codec: str
    defect: str | None


@lru_cache(maxsize=512)
def canonical_codec(label: str | None) -> str | None:
    """Return the codec to decode ``label`` with, or None when the label is missing or unknown.

    Matching is case-insensitive and ignores quotes and surrounding space, as mailers vary.
    """
    if not label:
        return None
    name = label.strip().strip("\"'").strip().lower()
    if not name or len(name) > _MAX_LABEL_LENGTH or not (name.isascii() and name.isprintable()):
        return None  # codecs.lookup raises on NUL and surrogates; no charset name has them
    if name in _ALIASES:
        return _ALIASES[name]
    try:
        info = codecs.lookup(name)
    except LookupError:
        return None
    if info.name in _NOT_MAIL_CHARSETS:
        return None
    try:
        b"a".decode(info.name, "replace")  # empty input would skip the check below
    except LookupError:  # a bytes-to-bytes codec such as base64 or rot13
        return None
    except UnicodeError:  # a text codec that cannot decode a lone "a" (UTF-16) is still one
        pass
    # Python's canonical names (``shift_jis``, ``iso2022_jp``...) are keys of _ALIASES too.
    return _ALIASES.get(info.name, info.name)


# --- Japanese -----------------------------------------------------------------------------

_VENDOR_FALLBACK = "x-recruitmail-cp932-vendor"


def _jis_to_shift_jis(row_byte: int, cell_byte: int) -> bytes:
    """Map a JIS X 0208 code (both bytes 0x21-0x7E) to its Shift_JIS bytes (JIS X 0208 annex 1)."""
    lead = ((row_byte - 0x21) >> 1) + 0x81
    if lead > 0x9F:
        lead += 0x40
    if row_byte & 1:
        trail = cell_byte + 0x1F
        if trail >= 0x7F:
            trail += 1
    else:
        trail = cell_byte + 0x7E
    return bytes((lead, trail))


def _cp932_vendor_fallback(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: decode an EUC-JP pair that the JIS table lacks as CP932 would.

    The pairs CPython's EUC-JP codec refuses are exactly the cells JIS X 0208 leaves empty,
    which CP932 fills with the NEC row 13 symbols and the NEC-selected IBM extensions.
    """
    if not isinstance(error, UnicodeDecodeError):
        raise error
    data, start = error.object, error.start
    pair = bytes(data[start : start + 2])
    known = _VENDOR_CELLS.get(pair)
    if known is not None:
        return known, start + 2
    if len(pair) == 2 and 0xA1 <= pair[0] <= 0xFE and 0xA1 <= pair[1] <= 0xFE:
        try:
            known = _jis_to_shift_jis(pair[0] & 0x7F, pair[1] & 0x7F).decode("cp932")
        except UnicodeDecodeError:
            known = "\ufffd"  # and skip the whole pair, to keep the pairs aligned
        if len(_VENDOR_CELLS) < 1024:  # at most the 94 x 94 cells; bounded all the same
            _VENDOR_CELLS[pair] = known
        return known, start + 2
    return "\ufffd", start + 1


_VENDOR_CELLS: dict[bytes, str] = {}


codecs.register_error(_VENDOR_FALLBACK, _cp932_vendor_fallback)

# Where CP932 (and so CP50220) maps a JIS X 0208 cell to another code point than the JIS table
# does. Applied to the JIS X 0208 runs of ISO-2022-JP only, so that ISO-2022-JP and Shift_JIS
# from the same Windows sender decode to the same text; tests check the list is complete.
_JIS_TO_MICROSOFT = {
    "\u301c": "\uff5e",  # 〜 WAVE DASH → ～ FULLWIDTH TILDE
    "\u2016": "\u2225",  # ‖ DOUBLE VERTICAL LINE → ∥ PARALLEL TO
    "\u2212": "\uff0d",  # − MINUS SIGN → － FULLWIDTH HYPHEN-MINUS
    "\u00a2": "\uffe0",  # ¢ → ￠
    "\u00a3": "\uffe1",  # £ → ￡
    "\u00ac": "\uffe2",  # ¬ → ￢
}
_TO_EUC = bytes(b | 0x80 if 0x21 <= b <= 0x7E else b for b in range(256))
_KATAKANA_TO_CP932 = bytes(b + 0x80 if 0x21 <= b <= 0x5F else b for b in range(256))
# RFC 1468 designations plus the JIS X 0201 katakana, JIS X 0212 and JIS X 0213 sets that
# ISO-2022-JP-1/3/2004 and CP50221 use. ``ESC & @`` only announces the 1990 revision.
_JIS_ESCAPE = re.compile(rb"\x1b(\(B|\(J|\(I|\$@|\$B|&@|\$\(D|\$\(O|\$\(Q|\$\(P)")


def decode_euc_jp(data: bytes, *, strict: bool) -> str | None:
    """Decode EUC-JP (CP51932/eucJP-ms vendor cells included); None if strict and lossy."""
    text = data.decode("euc_jp", _VENDOR_FALLBACK)
    if strict and "\ufffd" in text:
        return None
    return text


def decode_iso_2022_jp(data: bytes, *, strict: bool) -> str | None:
    """Decode ISO-2022-JP as CP50220 would, with JIS X 0212/0213 runs as well.

    With ``strict``, return None for anything that is not clean 7-bit ISO-2022-JP (8-bit bytes,
    unknown escapes, cells no table maps); otherwise replace those with U+FFFD.
    """
    if strict and not data.isascii():
        return None
    as_euc = _as_euc_jp(data) if data.isascii() else None
    if as_euc is not None:
        # The common case, decoded in one codec call instead of one per run.
        text = decode_euc_jp(as_euc, strict=strict)
        return None if text is None else _as_microsoft(text)
    chunks = _JIS_ESCAPE.split(data)
    pieces: list[str] = []
    designation = b"(B"
    for index, chunk in enumerate(chunks):
        if index % 2:
            designation = chunk if chunk != b"&@" else designation
            continue
        if not chunk:
            continue
        if b"\x1b" in chunk:
            if strict:
                return None
            chunk = chunk.replace(b"\x1b", b"")
            pieces.append("\ufffd")
        piece = _decode_jis_run(designation, chunk)
        if piece is None:
            if strict:
                return None
            piece = _decode_jis_run(designation, chunk, lossy=True) or ""
        pieces.append(piece)
    return "".join(pieces)


_TWO_BYTE_RUN = re.compile(rb"\x1b\$[B@]([^\x1b]*)")
_ONE_BYTE_DESIGNATION = re.compile(rb"\x1b(?:\([BJ]|&@)")


def _as_euc_jp(data: bytes) -> bytes | None:
    """Rewrite 7-bit ISO-2022-JP in ASCII and JIS X 0208 as EUC-JP; None if it uses more.

    EUC-JP is the same code with the high bit set on the JIS X 0208 pairs, so the rewrite is
    byte arithmetic (``_TO_EUC``) done by the regex engine, and ASCII and line ends pass
    through. Other sets (katakana, JIS X 0212/0213) and unknown escapes return None.
    """
    euc = _TWO_BYTE_RUN.sub(lambda run: run[1].translate(_TO_EUC), data)
    euc = _ONE_BYTE_DESIGNATION.sub(b"", euc)
    return None if b"\x1b" in euc else euc


def _as_microsoft(text: str) -> str:
    """Apply _JIS_TO_MICROSOFT to ``text``.

    Six str.replace scans instead of str.translate: translate looks every character up in a
    dict, which costs more than the whole parse of a long Japanese message.
    """
    for jis_form, microsoft_form in _JIS_TO_MICROSOFT.items():
        if jis_form in text:
            text = text.replace(jis_form, microsoft_form)
    return text


def _decode_jis_run(designation: bytes, chunk: bytes, *, lossy: bool = False) -> str | None:
    """Decode one run of ISO-2022-JP bytes under ``designation``; None if not clean."""
    errors = "replace" if lossy else "strict"
    try:
        if designation in (b"(B", b"(J"):
            # JIS X 0201 Roman differs from ASCII only at 0x5C/0x7E; Windows and every mailer
            # we know treat it as ASCII, so a path "C:\" stays a backslash. 8-bit bytes here
            # are a mailer pasting Shift_JIS into ISO-2022-JP text: read them as CP932.
            return chunk.decode("ascii" if chunk.isascii() or not lossy else "cp932", errors)
        if designation == b"(I":
            return chunk.translate(_KATAKANA_TO_CP932).decode("cp932", errors)
        if designation in (b"$B", b"$@"):
            # Line breaks inside a two-byte run are a common mailer bug; they stay ASCII
            # because _TO_EUC leaves bytes below 0x21 alone, so the pairs stay aligned.
            text = decode_euc_jp(chunk.translate(_TO_EUC), strict=not lossy)
            return None if text is None else _as_microsoft(text)
        # JIS X 0212 and 0213 runs are rare; CPython's own codecs know them.
        codec = "iso2022_jp_2" if designation == b"$(D" else "iso2022_jp_2004"
        return (b"\x1b" + designation + chunk + b"\x1b(B").decode(codec, errors)
    except UnicodeDecodeError:
        return None


def _looks_like_iso_2022_jp(data: bytes) -> bool:
    """Whether 7-bit ``data`` designates a Japanese set (RFC 1468 escapes), whatever its label."""
    return b"\x1b$B" in data or b"\x1b$@" in data or b"\x1b(I" in data or b"\x1b$(" in data


# --- The decoding chain -------------------------------------------------------------------


def _try(data: bytes, codec: str) -> str | None:
    """Decode strictly with ``codec`` (ours or Python's); None if the bytes do not fit it."""
    if codec == ISO_2022_JP:
        return decode_iso_2022_jp(data, strict=True)
    if codec == EUC_JP:
        return decode_euc_jp(data, strict=True)
    try:
        return data.decode(_with_byte_order(codec, data))
    except (UnicodeDecodeError, LookupError):
        return None


def _replace(data: bytes, codec: str) -> str:
    """Decode with ``codec``, replacing what does not fit; UTF-8 if the codec itself fails."""
    if codec == ISO_2022_JP:
        return decode_iso_2022_jp(data, strict=False) or ""
    if codec == EUC_JP:
        return decode_euc_jp(data, strict=False) or ""
    try:
        return data.decode(_with_byte_order(codec, data), "replace")
    except (UnicodeError, LookupError):
        return data.decode(UTF_8, "replace")


_BYTE_ORDER_MARKS = (
    codecs.BOM_UTF32_LE,
    codecs.BOM_UTF32_BE,
    codecs.BOM_UTF16_LE,
    codecs.BOM_UTF16_BE,
)


def _with_byte_order(codec: str, data: bytes) -> str:
    """``codec``, with the byte order made explicit for UTF-16 and UTF-32 without a BOM.

    Python would read such text in the machine's order (little-endian here), RFC 2781 says
    big-endian; mail has both. The order is read from the data itself: in mostly-Latin text
    the zero bytes are the high bytes, which come first in big-endian.
    """
    if codec not in ("utf-16", "utf-32") or data.startswith(_BYTE_ORDER_MARKS):
        return codec
    width = 2 if codec == "utf-16" else 4
    sample = data[:4096]
    high_first = sum(1 for index in range(0, len(sample), width) if sample[index] == 0)
    low_first = sum(1 for index in range(width - 1, len(sample), width) if sample[index] == 0)
    return f"{codec}-be" if high_first > low_first else f"{codec}-le"


def decode_text(data: bytes, declared: str | None) -> DecodedText:
    """Decode ``data`` declared as charset ``declared`` (None if undeclared); never raises.

    Order: 7-bit data with ISO-2022-JP escapes → the ISO-2022-JP decoder whatever the label
    (mailers mislabel it); pure ASCII → ASCII. Otherwise valid UTF-8 wins over any other label,
    since legacy Japanese and Latin text practically never forms valid multi-byte UTF-8, while
    UTF-8 under a legacy label is a common mailer bug. Then the declared charset, strict: a
    label that fits the bytes is trusted. Then, for undeclared, unknown or wrong labels, CP932
    or EUC-JP (the charsets Japanese mail really uses; when both fit, the one that produces
    fewer half-width katakana and private-use characters, which is what the wrong one of the
    two produces) and Windows-1252. Last the declared charset (or UTF-8; ISO-2022-JP when the
    data has its escapes) with U+FFFD replacing what did not decode. Two exceptions to "a label
    that fits is trusted", both seen in real mail: EUC-JP under a Shift_JIS label, and UTF-16
    or UTF-32 that does not decode cleanly, which is never read as an 8-bit charset. Every
    guess and every replacement is reported in ``defect``.
    """
    codec = canonical_codec(declared)
    unknown = (
        f"unknown charset {declared[:_MAX_LABEL_LENGTH]!r}" if declared and not codec else None
    )
    if not data:
        return DecodedText("", codec or UTF_8, unknown)
    if data.isascii() and codec not in _NOT_ASCII_COMPATIBLE:
        if b"\x1b" in data and (codec == ISO_2022_JP or _looks_like_iso_2022_jp(data)):
            text = decode_iso_2022_jp(data, strict=True)
            if text is not None:
                relabelled = codec not in (ISO_2022_JP, None)
                return DecodedText(
                    text,
                    ISO_2022_JP,
                    _relabel_defect(declared, "ISO-2022-JP") if relabelled else unknown,
                )
            return DecodedText(
                decode_iso_2022_jp(data, strict=False) or "",
                ISO_2022_JP,
                "ISO-2022-JP text with invalid sequences; some characters were replaced",
            )
        return DecodedText(data.decode("ascii"), codec or "ascii", unknown)
    decoded = _decode_strictly(data, codec)
    if decoded is not None:
        text, used = decoded
        if codec and used != codec:
            return DecodedText(text, used, _relabel_defect(declared, _label(used)))
        if not declared:
            # RFC 2045 section 5.2 and RFC 5322 section 2.2: undeclared means US-ASCII.
            return DecodedText(text, used, f"8-bit text without a charset; read as {_label(used)}")
        return DecodedText(text, used, unknown)
    # 8-bit bytes in text with ISO-2022-JP escapes (Shift_JIS pasted into JIS text): no
    # strict decoding fits, and the lenient ISO-2022-JP decoder keeps the most.
    fallback = ISO_2022_JP if _looks_like_iso_2022_jp(data) else codec or UTF_8
    return DecodedText(
        _replace(data, fallback),
        fallback,
        f"text in {declared or 'an undeclared charset'!s:.{_MAX_LABEL_LENGTH}} did not decode "
        "cleanly; undecodable bytes were replaced",
    )


def _decode_strictly(data: bytes, codec: str | None) -> tuple[str, str] | None:
    """The first lossless decoding of non-ASCII ``data`` in decode_text's order, and its codec."""
    if codec in _NOT_ASCII_COMPATIBLE:
        text = _try(data, codec)
        if text is not None:
            return text, codec
        if b"\x00" in data:
            # UTF-16 or UTF-32 that does not decode cleanly (cut short, a stray byte): its
            # NUL bytes would pass for text in CP932 or Windows-1252, never rightly.
            return None
    if _looks_like_iso_2022_jp(data):
        return None  # 8-bit bytes beside JIS escapes: see decode_text's fallback
    text = _try(data, "utf_8_sig")  # also drops a leading byte-order mark
    if text is not None:
        return text, UTF_8
    if codec and codec != UTF_8:
        text = _try(data, codec)
        if text is not None:
            if codec == "cp932" and _looks_like_euc_jp_read_as_cp932(text):
                euc = _try(data, EUC_JP)
                if euc is not None and not _suspicion(euc):
                    return euc, EUC_JP
            return text, codec
    japanese = [
        (_suspicion(text), order, text, candidate)
        for order, candidate in enumerate(("cp932", EUC_JP))
        if candidate != codec and (text := _try(data, candidate)) is not None
    ]
    if japanese:
        _, _, text, candidate = min(japanese)
        return text, candidate
    if codec != "cp1252":
        text = _try(data, "cp1252")
        if text is not None:
            return text, "cp1252"
    return None


# Half-width katakana, the private-use area and C1 controls: rare in real Japanese text, and
# what CP932 makes of EUC-JP bytes (and EUC-JP of CP932 bytes).
_SUSPICIOUS = re.compile("[\uff61-\uff9f\ue000-\uf8ff\x80-\x9f]")


# EUC-JP's hiragana row (0xA4 lead byte) and its 、。 (0xA1A2, 0xA1A3) read as CP932 are
# half-width "､" and "｡": a few of them mean EUC-JP under a Shift_JIS label, since real
# Shift_JIS text writes the full-width forms (half-width katakana text included, which is what
# makes the label alone ambiguous).
_EUC_JP_AS_CP932 = re.compile("[\uff61\uff64]")


def _looks_like_euc_jp_read_as_cp932(text: str) -> bool:
    return len(_EUC_JP_AS_CP932.findall(text, 0, 4096)) >= 3


def _suspicion(text: str) -> int:
    """How many characters of ``text`` a wrong Japanese decoding typically produces."""
    return len(_SUSPICIOUS.findall(text))


def _label(codec: str) -> str:
    """The name a person knows ``codec`` by, for defect messages."""
    return {ISO_2022_JP: "ISO-2022-JP", EUC_JP: "EUC-JP", UTF_8: "UTF-8", "cp932": "CP932"}.get(
        codec, codec
    )


def _relabel_defect(declared: str | None, actual: str) -> str:
    """The defect for text that decoded as ``actual`` although labelled ``declared``."""
    return f"declared charset {str(declared)[:_MAX_LABEL_LENGTH]!r} but the text is {actual}"


# --- What a database text column can hold -------------------------------------------------

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """Return ``text`` without NUL characters and lone surrogates (PostgreSQL rejects both).

    Lone surrogates become U+FFFD so that the reader sees something was there.
    """
    if "\x00" in text:
        text = text.replace("\x00", "")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = _UNSTORABLE.sub("\ufffd", text)
    return text
