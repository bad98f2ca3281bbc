"""parse_message against real .eml files (tests/mailboxes/eml) and generated edge cases.

Every test goes through ``parse``, which fails when the last-resort catch-all was needed: the
cases below must each be handled where they happen, not rescued by the catch-all.
"""

from __future__ import annotations

import base64
import dataclasses
import random
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailboxes import parsing
from mailboxes.parsing import Correspondent, ParsedMessage, parse_message

EML = Path(__file__).parent / "eml"


def parse(raw: bytes) -> ParsedMessage:
    """parse_message, failing if the catch-all ran or a field is not storable or bounded."""
    message = parse_message(raw)
    assert not message.unparsed, message.defects
    assert_storable(message)
    return message


def parse_file(name: str) -> ParsedMessage:
    return parse((EML / name).read_bytes())


def assert_storable(message: ParsedMessage) -> None:
    """No NUL, no lone surrogate in any str (PostgreSQL refuses both), lengths bounded."""

    def check(value: object, where: str) -> None:
        if isinstance(value, str):
            assert "\x00" not in value, where
            value.encode("utf-8")  # raises on a lone surrogate
        elif isinstance(value, list):
            for index, item in enumerate(value):
                check(item, f"{where}[{index}]")
        elif dataclasses.is_dataclass(value):
            for field in dataclasses.fields(value):
                check(getattr(value, field.name), f"{where}.{field.name}")

    check(message, "message")
    assert len(message.subject) <= 998
    assert all(len(mid) <= 998 for mid in [message.message_id, message.in_reply_to])
    assert all(len(mid) <= 998 for mid in message.references)
    assert all(0 < len(a.filename) <= 255 for a in message.attachments)
    assert len(message.snippet) <= 200
    assert message.date is None or message.date.tzinfo is not None


def attachment(message: ParsedMessage, filename: str) -> parsing.ParsedAttachment:
    matches = [a for a in message.attachments if a.filename == filename]
    assert len(matches) == 1, [a.filename for a in message.attachments]
    return matches[0]


PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n%%EOF\n"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489")


# --- Japanese charsets --------------------------------------------------------------------


def test_iso_2022_jp_as_outlook_writes_it_keeps_vendor_characters() -> None:
    raw = (EML / "iso2022jp_outlook_vendor.eml").read_bytes()
    # CP50220 writes ① ㈱ Ⅲ in NEC row 13 (0x2D21, 0x2D6A, 0x2D37) and ～ as JIS 0x2141,
    # all under ESC $ B, which the JIS X 0208 table leaves empty or maps to 〜 (U+301C).
    assert b"\x1b$B-!-j!A-7$N" in raw

    message = parse(raw)

    assert message.subject == "【①㈱～Ⅲ】面接日程"
    assert message.text_body == (
        "山田様\n\n①㈱～Ⅲのご確認をお願いします。\n髙橋（IBM拡張）、ｶﾀｶﾅ、~と\\も。\n"
    )
    assert message.sender == Correspondent("採用担当", "recruit@example.co.jp")
    assert message.to == [Correspondent("山田 太郎", "taro.yamada@example.jp")]
    assert message.defects == []
    assert message.snippet.startswith("山田様 ①㈱～Ⅲのご確認")


def test_shift_jis_label_with_cp932_vendor_characters() -> None:
    message = parse_file("shift_jis_declared_cp932.eml")

    assert message.subject == "①面接～Ⅲ"
    assert message.text_body == "お世話になっております。\n①㈱～Ⅲ 髙﨑 ∥－￠￡￢\n"
    assert message.sender == Correspondent("髙橋 花子", "hanako@example.jp")
    assert message.defects == []


def test_euc_jp() -> None:
    message = parse_file("euc_jp.eml")

    assert message.subject == "選考結果のお知らせ"
    assert message.sender == Correspondent("人事部", "jinji@example.jp")
    assert message.text_body == "ご応募ありがとうございます。\n選考結果は後日ご連絡いたします。\n"
    assert message.defects == []


# --- Wrong labels -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "defect"),
    [
        ("charset_unknown_label.eml", "お世話になっております。①", "unknown charset 'x-unknown'"),
        ("charset_utf8_alias.eml", "履歴書を添付します。", None),
        ("charset_ascii_but_utf8.eml", "Café – 面接", "declared charset 'us-ascii'"),
        ("charset_latin1_but_utf8.eml", "Müller さん、こんにちは", "declared charset 'iso-8859-1'"),
    ],
)
def test_wrong_or_unknown_charset_labels(name: str, text: str, defect: str | None) -> None:
    message = parse_file(name)

    assert message.text_body == text
    assert "\ufffd" not in message.text_body
    if defect is None:
        assert message.defects == []
    else:
        assert any(defect in found for found in message.defects), message.defects


# --- Headers ------------------------------------------------------------------------------


def test_encoded_words_split_mid_character_and_joined_without_space() -> None:
    message = parse_file("encoded_words_split.eml")

    assert message.subject == "面接のご案内（第二次） / Round 2"
    assert message.sender == Correspondent("佐藤 次郎", "jiro@example.jp")
    assert message.to == [Correspondent("Hanako 花子", "hanako@example.jp")]
    assert message.defects == []


def test_raw_8bit_and_bare_cr_headers() -> None:
    message = parse_file("eight_bit_headers.eml")

    assert message.sender == Correspondent("髙橋 一郎", "ichiro@example.jp")  # raw Shift_JIS
    assert message.to == [  # raw UTF-8, folded with a bare LF
        Correspondent("山田", "yamada@example.jp"),
        Correspondent("佐藤", "sato@example.jp"),
    ]
    assert message.cc == [Correspondent("鈴木", "suzuki@example.jp")]  # raw ISO-2022-JP
    # The bare CR did not start a new header line ("injected: no" stays in the subject).
    assert message.subject == "面接のご案内 injected: no"
    assert message.message_id == "8bit-0001@example.jp"
    assert "bare carriage returns in the headers were read as spaces" in message.defects
    assert "From: 8-bit text without a charset; read as CP932" in message.defects


def test_missing_message_id_and_date() -> None:
    message = parse_file("no_message_id_no_date.eml")

    assert message.message_id == ""
    assert message.date is None
    assert "the message has no Message-ID" in message.defects
    assert "the message has no Date header" in message.defects
    assert message.text_body == "Just text."


def test_ids_dates_and_reply_headers() -> None:
    message = parse_file("alternative_with_attachments.eml")

    assert message.message_id == "alt-0001@example.jp"
    assert message.in_reply_to == "parent-1@example.com"
    assert message.references == ["root-1@example.com", "parent-1@example.com"]
    assert message.date == datetime(2024, 7, 1, 1, 0, tzinfo=UTC)
    assert message.date.utcoffset() == timedelta(hours=9)
    assert message.cc == [
        Correspondent("", "boss@example.com"),
        Correspondent("井上", "inoue@example.jp"),
    ]
    assert message.reply_to == [Correspondent("", "jobs@example.jp")]


@pytest.mark.parametrize(
    "hostile",
    ["(" * 5000, "a:" * 5000, "<" * 5000, '"\\' * 5000],
    ids=["nested comments", "nested groups", "open angles", "escapes"],
)
def test_address_lists_that_make_the_stdlib_recurse(hostile: str) -> None:
    """email.utils.getaddresses raises RecursionError on nested comments and groups."""
    raw = b"To: ok@example.jp\r\nCc: " + hostile.encode() + b"\r\n\r\nbody"

    message = parse(raw)

    assert message.to == [Correspondent("", "ok@example.jp")]
    assert message.cc == []


# --- Attachments ----------------------------------------------------------------------------


def test_rfc_2231_file_names() -> None:
    message = parse_file("rfc2231_filename.eml")

    assert [a.filename for a in message.attachments] == [
        "履歴書.pdf",
        "応募書類_山田太郎_2024年7月版.docx",  # filename*0*= / filename*1*= continuation
        "職務経歴書.txt",  # charset ISO-2022-JP in RFC 2231 form
    ]
    assert attachment(message, "履歴書.pdf").payload == PDF
    assert attachment(message, "履歴書.pdf").content_type == "application/pdf"
    docx = attachment(message, "応募書類_山田太郎_2024年7月版.docx")
    assert docx.payload == b"PK\x03\x04" + bytes(range(256))
    assert attachment(message, "職務経歴書.txt").payload == "メモ".encode("cp932")
    assert message.text_body == "添付します。"  # a text/plain attachment is not body text
    assert message.defects == []


def test_encoded_word_file_names() -> None:
    message = parse_file("encoded_word_filename.eml")

    sheet = attachment(message, "①評価シート.xls")
    assert sheet.payload == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 24
    assert sheet.is_inline is False
    assert attachment(message, "髙橋_推薦状.pdf").payload == PDF  # name= only, Shift_JIS
    assert message.text_body == "よろしくお願いします。"


def test_alternatives_give_both_bodies_and_attachments_keep_their_roles() -> None:
    message = parse_file("alternative_with_attachments.eml")

    assert message.text_body == "プレーンテキスト版\n2行目\n"
    assert "<p>HTML版</p>" in message.html_body
    assert message.has_remote_images is True
    photo = attachment(message, "photo.png")
    assert (photo.payload, photo.content_id, photo.is_inline) == (PNG, "photo@example.jp", True)
    resume = attachment(message, "resume.pdf")  # "../../etc/resume.pdf" lost its directories
    assert (resume.payload, resume.is_inline) == (PDF, False)


def test_bounce_parts_become_text_attachments() -> None:
    raw = (
        b"From: MAILER-DAEMON@example.jp\r\n"
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n"
        b"--r\r\nContent-Type: text/plain\r\n\r\nDelivery failed\r\n"
        b"--r\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; example.jp\r\n\r\nFinal-Recipient: rfc822; a@example.jp\r\n"
        b"Status: 5.1.1\r\n\r\n--r--\r\n"
    )

    message = parse(raw)

    status = attachment(message, "delivery-status.txt")
    assert status.content_type == "message/delivery-status"
    assert b"Status: 5.1.1" in status.payload
    assert message.text_body.strip() == "Delivery failed"


def test_base64_encoded_contained_message_is_decoded() -> None:
    """RFC 2046 forbids encoding message/rfc822; some mailers do it anyway."""
    inner = b"From: c@example.com\r\nSubject: inner\r\n\r\nhello\r\n"
    raw = (
        b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n"
        b"--q\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(inner).replace(b"\n", b"\r\n")
        + b"--q--\r\n"
    )

    (forwarded,) = parse(raw).attachments

    assert forwarded.payload == inner


def test_contained_message_becomes_an_eml_attachment() -> None:
    message = parse_file("message_rfc822_attachment.eml")

    forwarded = attachment(message, "応募の件.eml")
    assert forwarded.content_type == "message/rfc822"
    inner = parse(forwarded.payload)
    assert inner.subject == "応募の件"
    assert inner.text_body.strip() == "よろしくお願いします。"
    assert inner.message_id == "inner-0001@example.com"
    assert message.text_body == "See attached."


def test_long_file_name_keeps_its_extension() -> None:
    raw = b'Content-Type: application/pdf; name="' + "あ".encode() * 400 + b'.pdf"\r\n\r\nx'

    (only,) = parse(raw).attachments

    assert len(only.filename) == 255
    assert only.filename.endswith("ああ.pdf")


# --- HTML -----------------------------------------------------------------------------------


def test_html_only_message_is_sanitised_and_remote_images_blocked() -> None:
    message = parse_file("html_only_hostile.eml")
    html = message.html_body

    for forbidden in (
        "<script",
        "alert",
        "steal",
        "onerror",
        "onload",
        "onclick",
        "javascript:",
        "style",
        "<iframe",
        "<form",
        "<input",
        "<meta",
        "<base",
        "Hidden title",
        "data:",
    ):
        assert forbidden not in html, forbidden
    # Every image source is empty (remote, in data-remote-src) or a cid: reference.
    assert re.findall(r'\ssrc="([^"]*)"', html) == ["", "cid:logo@recruit.example"]
    assert (
        '<img src="" data-remote-src="https://tracker.example/open.gif?id=42&amp;u=7" '
        'width="1" height="1">'
    ) in html
    assert '<img src="cid:logo@recruit.example" alt="logo">' in html
    assert (
        '<a href="https://example.com/jobs?id=1&amp;x=2" target="_blank" '
        'rel="noopener noreferrer nofollow">求人</a>'
    ) in html
    assert "<table>" in html and "<td>日時</td>" in html
    assert message.has_remote_images is True
    # No text/plain part: the text body is a rendering of the HTML.
    assert message.text_body == "面接のご案内 & 日程\nclick 求人送信\n\n日時 7月1日"
    logo = attachment(message, "attachment-1.png")
    assert (logo.payload, logo.content_id, logo.is_inline) == (PNG, "logo@recruit.example", True)


def test_html_without_remote_images() -> None:
    raw = b'Content-Type: text/html; charset=utf-8\r\n\r\n<p>Hi <img src="CID:a@b"></p>'

    message = parse(raw)

    assert message.has_remote_images is False
    assert message.html_body == '<p>Hi <img src="cid:a@b"></p>'
    assert message.text_body == "Hi"


def test_html_charset_from_meta_when_the_header_is_silent() -> None:
    html = '<html><head><meta charset="Shift_JIS"></head><body>①面接</body></html>'
    raw = b"Content-Type: text/html\r\n\r\n" + html.encode("cp932")

    assert parse(raw).text_body == "①面接"


# --- Broken MIME ----------------------------------------------------------------------------


def test_missing_closing_boundary_keeps_the_parts() -> None:
    message = parse_file("missing_closing_boundary.eml")

    assert message.text_body == "前半は読めます。"
    assert attachment(message, "data.bin").payload == b"\x00\x01\x02binary"
    assert any("no closing boundary" in defect for defect in message.defects)


def test_multipart_without_boundary_is_kept_as_text() -> None:
    message = parse_file("missing_boundary_param.eml")

    assert "Text that is still worth searching." in message.text_body
    assert any("names no boundary" in defect for defect in message.defects)


def test_damaged_base64_and_quoted_printable_keep_what_decodes() -> None:
    message = parse_file("bad_transfer_encoding.eml")

    assert message.text_body == "面接 softbreak, bad =ZZ escape, and あ"
    assert attachment(message, "a.bin").payload == bytes(range(7))
    # "BASE64 " (case, trailing space) is base64; blocks concatenated after padding decode.
    assert attachment(message, "b.bin").payload == b"helloworld"
    assert "part 2: base64 content held characters outside the alphabet, which were skipped" in (
        message.defects
    )


def test_nul_bytes_never_reach_text_fields() -> None:
    message = parse_file("nul_bytes.eml")

    assert message.subject == "beforeafter"
    assert message.sender == Correspondent("nulname", "nul@example.com")
    assert message.text_body == "helloworld"
    assert attachment(message, "z.bin").payload == b"\x00\x00\x01"  # bytes are kept as sent
    assert any("NUL" in defect for defect in message.defects)


def test_garbage_and_empty_input() -> None:
    garbage = parse_file("not_mime_garbage.eml")
    assert garbage.defects
    assert garbage.sender is None

    empty = parse(b"")
    assert empty.text_body == "" and empty.subject == "" and empty.attachments == []
    assert "the message has no From header" in empty.defects


def nested_multipart(depth: int) -> bytes:
    body = b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + "深い本文".encode() + b"\r\n"
    for level in range(depth):
        boundary = b"level%d" % level
        body = (
            b'Content-Type: multipart/mixed; boundary="'
            + boundary
            + b'"\r\n\r\n--'
            + boundary
            + b"\r\n"
            + body
            + b"\r\n--"
            + boundary
            + b"--\r\n"
        )
    return b"From: a@example.com\r\nSubject: deep\r\n" + body


def test_one_hundred_levels_of_nesting() -> None:
    message = parse(nested_multipart(100))

    assert message.text_body.strip() == "深い本文"


def test_nesting_deeper_than_the_stdlib_parser_can_recurse() -> None:
    message = parse(nested_multipart(2000))

    assert message.subject == "deep"
    assert any("nested too deeply" in defect for defect in message.defects)


def test_ten_thousand_empty_parts_stay_fast() -> None:
    raw = (
        b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n"
        + b"--zz\r\n\r\n" * 10_000
        + b"--zz--\r\n"
    )

    started = time.perf_counter()
    message = parse(raw)

    assert time.perf_counter() - started < 1.0
    assert message.text_body == "" and message.attachments == []


def test_conflicting_rfc_2231_sections_do_not_crash_the_stdlib_parser() -> None:
    """The stdlib's own parameter parser raises TypeError on these; ours reads them."""
    raw = (
        b"From: a@example.com\r\n"
        b"Content-Type: multipart/mixed; boundary*=y; boundary*0=x\r\n\r\n"
        b"--y\r\nContent-Type: text/plain; charset*=a; charset*0=b\r\n\r\nhello\r\n--y--\r\n"
    )

    assert parse(raw).text_body.strip() == "hello"


def test_field_lengths_are_bounded() -> None:
    raw = (
        b"Subject: " + b"x" * 5000 + b"\r\nMessage-ID: <" + b"i" * 5000 + b"@x>\r\n"
        b"References: " + b" ".join(b"<r%d@x>" % n for n in range(500)) + b"\r\n\r\nbody"
    )

    message = parse(raw)

    assert len(message.subject) == 998
    assert len(message.message_id) == 998
    assert len(message.references) == 100
    assert message.references[0] == "r0@x" and message.references[-1] == "r499@x"


@pytest.mark.parametrize("name", sorted(path.name for path in EML.glob("*.eml")))
def test_every_fixture_parses_to_storable_fields(name: str) -> None:
    parse_file(name)


def test_mutated_fixtures_never_need_the_catch_all() -> None:
    """A small deterministic fuzz: flipped bytes, cut messages, injected MIME syntax."""
    tokens = [
        b"\r", b"\n", b"\x00", b"\x1b$B", b"\x1b(B", b"=?", b"?=", b"=?UTF-8?B?", b";", b'"',
        b"boundary*=x;", b"filename*0*=UTF-8''%E5", b"charset*=a; charset*0=b", b"\\", b"(",
        b"<", b",", b"\x80", b"\xe3\x81", b"Content-Transfer-Encoding: base64\r\n", b"%",
        b"Content-Type: message/rfc822\r\n", b"Date: 31 Feb 2024 99:99:99 +9999\r\n",
    ]  # fmt: skip
    seeds = [path.read_bytes() for path in sorted(EML.glob("*.eml"))]
    rng = random.Random(2024)
    for _ in range(400):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            position = rng.randint(0, len(data))
            choice = rng.random()
            if choice < 0.3 and data:
                data[min(position, len(data) - 1)] = rng.randrange(256)
            elif choice < 0.8:
                data[position:position] = rng.choice(tokens)
            else:
                del data[position : position + rng.randint(1, 40)]
        parse(bytes(data))


def test_the_last_resort_reports_instead_of_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(raw: bytes) -> None:
        raise RuntimeError("a bug we have not met yet")

    monkeypatch.setattr(parsing, "_Parse", broken)

    message = parse_message(b"Subject: x\r\n\r\nbody")

    assert message.unparsed is True
    assert message.defects == ["the message could not be parsed (RuntimeError)"]
