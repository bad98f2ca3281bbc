"""mailboxes.charsets: Japanese superset decoding, label aliases, and the decoding chain."""

from __future__ import annotations

import pytest

from mailboxes.charsets import (
    EUC_JP,
    ISO_2022_JP,
    UTF_8,
    canonical_codec,
    decode_iso_2022_jp,
    decode_text,
    storable,
)


def test_iso_2022_jp_decoder_agrees_with_cp932_on_every_jis_x_0208_cell() -> None:
    """Each cell decodes as CP932 decodes its Shift_JIS twin: the CP50220 behaviour."""
    checked = 0
    for row in range(0x21, 0x7F):
        for cell in range(0x21, 0x7F):
            lead = ((row - 0x21) >> 1) + 0x81
            lead += 0x40 if lead > 0x9F else 0
            if row & 1:
                trail = cell + 0x1F + (1 if cell + 0x1F >= 0x7F else 0)
            else:
                trail = cell + 0x7E
            try:
                expected = bytes((lead, trail)).decode("cp932")
            except UnicodeDecodeError:
                continue
            jis = b"\x1b$B" + bytes((row, cell)) + b"\x1b(B"
            assert decode_iso_2022_jp(jis, strict=True) == expected, hex(row << 8 | cell)
            checked += 1
    assert checked > 7000


def test_iso_2022_jp_with_jis_x_0212_and_half_width_katakana() -> None:
    assert decode_iso_2022_jp(b"\x1b$(D0!\x1b(B", strict=True) == "丂"
    assert decode_iso_2022_jp(b"\x1b(I123\x1b(B", strict=True) == "ｱｲｳ"
    # A mailer that forgot to switch back to ASCII before the line break.
    assert decode_iso_2022_jp(b"\x1b$B$3$s\r\n$K$A\x1b(B", strict=True) == "こん\r\nにち"


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        ("Shift_JIS", "cp932"),
        ("SJIS", "cp932"),
        ("x-sjis", "cp932"),
        ("MS932", "cp932"),
        ("Windows-31J", "cp932"),
        ("ISO-2022-JP", ISO_2022_JP),
        ("iso-2022-jp", ISO_2022_JP),
        ("CP50220", ISO_2022_JP),
        ("EUC-JP", EUC_JP),
        ('"utf8"', UTF_8),
        ("UTF-8", UTF_8),
        ("x-unknown", None),
        ("base64", None),
        ("\udcff", None),
        ("", None),
    ],
)
def test_charset_aliases(label: str, codec: str | None) -> None:
    assert canonical_codec(label) == codec


def test_shift_jis_bytes_under_an_iso_2022_jp_label() -> None:
    decoded = decode_text("①面接".encode("cp932"), "ISO-2022-JP")

    assert decoded.text == "①面接"
    assert decoded.defect is not None and "CP932" in decoded.defect


def test_undeclared_euc_jp_is_not_read_as_cp932() -> None:
    """Both fit these bytes; CP932's reading is half-width katakana and private-use junk."""
    decoded = decode_text("こんにちは、お世話になっております。".encode("euc_jp"), None)

    assert decoded.text == "こんにちは、お世話になっております。"


def test_undecodable_text_is_replaced_and_reported() -> None:
    decoded = decode_text(b"\xff\xfe\xfa abc \x81", "utf-8")

    assert "abc" in decoded.text and "\ufffd" in decoded.text
    assert decoded.defect is not None


def test_storable_removes_nul_and_lone_surrogates() -> None:
    assert storable("a\x00b\udc80c") == "ab\ufffdc"


# --- Found by the hostile corpus (tests/mailboxes/eml/hostile/) -----------------------------


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_utf16_and_utf32_without_a_byte_order_mark_in_either_order(codec: str) -> None:
    data = "Interview 面接 on Monday".encode(codec)
    declared = codec.rsplit("-", 1)[0]  # "utf-16": no order in the label, no BOM in the data

    assert decode_text(data, declared) == (data.decode(codec), declared, None)


def test_utf16_cut_short_is_replaced_not_read_as_cp932() -> None:
    decoded = decode_text("body テスト".encode("utf-16-le") + b"\x00", "UTF-16")

    assert decoded.text == "body テスト\ufffd"
    assert decoded.defect is not None and "did not decode cleanly" in decoded.defect


def test_shift_jis_pasted_into_iso_2022_jp() -> None:
    data = "確認".encode("iso2022_jp") + b" " + "あ①".encode("cp932") + b" ok"

    decoded = decode_text(data, "ISO-2022-JP")

    assert decoded.text == "確認 あ① ok"
    assert decoded.codec == ISO_2022_JP and decoded.defect is not None


def test_undeclared_jis_escapes_beside_8bit_bytes_never_keep_the_escapes() -> None:
    decoded = decode_text("面接".encode("iso2022_jp") + b" \xe9t\xe9", None)

    assert decoded.text.startswith("面接") and "\x1b" not in decoded.text


def test_euc_jp_under_a_shift_jis_label() -> None:
    text = "こんにちは、採用担当の山田です。"

    decoded = decode_text(text.encode("euc_jp"), "Shift_JIS")

    assert decoded.text == text
    assert decoded.codec == EUC_JP and decoded.defect is not None and "EUC-JP" in decoded.defect


@pytest.mark.parametrize(
    "text",
    [
        "ｶ)ﾔﾏﾀﾞｼｮｳｼﾞ ﾆｭｳｷﾝ",  # half-width katakana only: EUC-JP fits these bytes too
        "ｶﾌﾞｼｷｶﾞｲｼｬ､ﾔﾏﾀﾞ｡",  # with the half-width punctuation, but too little of it
        "面接のご案内。ｶﾀｶﾅも、①も。",
    ],
)
def test_shift_jis_labels_are_still_trusted_for_real_shift_jis(text: str) -> None:
    decoded = decode_text(text.encode("cp932"), "Shift_JIS")

    assert (decoded.text, decoded.codec, decoded.defect) == (text, "cp932", None)
