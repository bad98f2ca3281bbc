"""The hostile mail corpus (``eml/hostile/``, cases listed in its README) through parse_message:
every file parses without the last resort, into storable fields, sanitised HTML and harmless
file names; and the fixes the corpus led to, each pinned on its own file."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from mailboxes import parsing
from mailboxes.parsing import ParsedMessage, parse_message

CORPUS = Path(__file__).parent / "eml" / "hostile"
FILES = sorted(path.name for path in CORPUS.glob("*.eml"))
# What the sanitised HTML may never hold (mailboxes.html's contract): these elements and
# attributes (looked for with attribute values blanked out, since a value may quote anything),
# and these schemes in a URL attribute.
FORBIDDEN_MARKUP = re.compile(
    r"<(?:script|style|iframe|frame|object|embed|applet|svg|math|form|input|button|meta|base|"
    r"link|video|audio|source|portal|textarea)\b|\s(?:style|on[a-z]+|srcset|background)=",
    re.IGNORECASE,
)
FORBIDDEN_URL = re.compile(r'\s(?:href|src)="\s*(?:javascript|vbscript|data):', re.IGNORECASE)
INVISIBLE = {"Cc", "Cf", "Zl", "Zp", "Cs"}


def parse(name: str) -> ParsedMessage:
    return parse_message((CORPUS / name).read_bytes())


def test_the_corpus_is_large_and_documented() -> None:
    assert len(FILES) >= 50
    readme = (CORPUS / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in FILES)


@pytest.mark.parametrize("name", FILES)
def test_every_hostile_file_parses_into_safe_fields(name: str) -> None:
    message = parse(name)
    assert not message.unparsed, message.defects
    texts = [message.subject, message.text_body, message.html_body, message.snippet]
    texts += [c.name + c.address for c in [message.sender, *message.to, *message.cc] if c]
    for text in texts:
        assert "\x00" not in text
        text.encode("utf-8")  # no lone surrogates
    assert "\n" not in message.subject and len(message.subject) <= 998
    markup = re.sub(r'="[^"]*"', '=""', message.html_body)
    assert FORBIDDEN_MARKUP.search(markup) is None, FORBIDDEN_MARKUP.search(markup)
    assert FORBIDDEN_URL.search(message.html_body) is None
    # The attacker's URL survives only where nothing loads it: a blocked image or a link.
    loaded = re.sub(r'\sdata-remote-src="[^"]*"|<a\s[^>]*>', "", message.html_body)
    assert "beacon.invalid" not in loaded
    for attachment in message.attachments:
        filename = attachment.filename
        assert 0 < len(filename) <= 255 and filename not in (".", "..")
        assert "/" not in filename and "\\" not in filename, filename
        assert not any(unicodedata.category(ch) in INVISIBLE for ch in filename), filename


def test_a_nul_in_a_header_name_hides_no_header() -> None:
    """The stdlib parser ends the headers at a line whose name holds NUL; it lost the
    Message-ID, the Date and the attachment after it."""
    message = parse("16_nul_bytes.eml")
    assert message.message_id == "hostile-16@corpus.test"
    assert message.date is not None
    assert [a.filename for a in message.attachments] == ["nulname.txt"]
    assert message.text_body == "bodywithnuls"
    assert "NUL bytes in the headers were removed" in message.defects


def test_bidirectional_and_zero_width_characters_leave_file_names() -> None:
    """The message page lists the stored name: "invoice<RLO>fdp.exe" read "invoiceexe.pdf"."""
    names = [a.filename for a in parse("58_name_unicode_disguises.eml").attachments]
    assert names[:4] == ["invoicefdp.exe", "report.pdf.exe", "CON.txt", "line sep.txt"]
    assert names[-1] == "txt.exe"


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("cv\u202efdp.exe", "cvfdp.exe"),
        ("\u2066\u2067a\u2069.txt", "a.txt"),
        ("a\u200b\u200c\u200d\u2060b.pdf", "ab.pdf"),
        ("\ufeffname.txt", "name.txt"),
        ("two\u2029lines.txt", "two lines.txt"),
        ("soft\u00adhyphen.txt", "softhyphen.txt"),
        ("履歴書\u3000山田.pdf", "履歴書\u3000山田.pdf"),  # visible space kept
    ],
)
def test_safe_filename_drops_invisible_characters(name: str, safe: str) -> None:
    assert parsing._safe_filename(name) == safe


def test_shift_jis_pasted_into_iso_2022_jp_text() -> None:
    """Read leniently as ISO-2022-JP (with the 8-bit bytes as CP932), not as CP932 with the
    escape sequences left in the text."""
    message = parse("07_iso2022jp_mixed_escape_errors.eml")
    assert "\x1b" not in message.text_body
    assert message.text_body.startswith("確認") and " あ " in message.text_body
    assert "ｱｲ" in message.text_body and "亜" in message.text_body


def test_utf16_without_a_byte_order_mark() -> None:
    message = parse("05_charset_utf16_no_bom.eml")
    assert message.text_body.startswith("utf-16 body テスト")


def test_euc_jp_under_a_shift_jis_label() -> None:
    message = parse("09_euc_jp_declared_shift_jis.eml")
    assert message.text_body.strip() == "採用担当の山田です。"
    assert any("EUC-JP" in defect for defect in message.defects)


def test_a_display_name_posing_as_another_address_is_dropped() -> None:
    message = parse("11_encoded_word_address_spoof.eml")
    assert message.sender is not None
    assert (message.sender.name, message.sender.address) == ("", "attacker@hostile.example")
    assert "From: a display name showing another address was dropped" in message.defects


@pytest.mark.parametrize(
    ("from_header", "name"),
    [
        ('"ceo@client.example" <attacker@evil.example>', ""),
        ('"CEO (ceo＠client.example)" <attacker@evil.example>', ""),  # full-width at sign
        ('"Taro Yamada" <taro@example.jp>', "Taro Yamada"),
        ('"taro@example.jp" <taro@example.jp>', "taro@example.jp"),  # its own address
        ('"Taro (TARO@Example.JP)" <taro@example.jp>', "Taro (TARO@Example.JP)"),
        ('"Sales @ Acme" <sales@acme.example>', "Sales @ Acme"),  # not an address
    ],
)
def test_display_names_are_kept_unless_they_show_another_address(
    from_header: str, name: str
) -> None:
    raw = f"From: {from_header}\r\nSubject: x\r\n\r\nbody\r\n".encode()
    sender = parse_message(raw).sender
    assert sender is not None and sender.name == name
