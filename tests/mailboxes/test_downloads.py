"""File names, download headers and the frame document, without the database."""

from __future__ import annotations

import pytest

from mailboxes.downloads import (
    attachment_disposition,
    inline_image_reader,
    inline_image_token,
    safe_content_type,
    safe_filename,
)


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("/etc/shadow", "shadow"),
        ("C:\\Users\\x\\evil.bat", "evil.bat"),
        ("..", "attachment"),
        ("", "attachment"),
        ("CON.txt", "_CON.txt"),
        ("con", "_con"),
        ("Lpt1.tar.gz", "_Lpt1.tar.gz"),
        ("COM¹.log", "_COM¹.log"),
        ("CONSOLE.txt", "CONSOLE.txt"),
        ("NUL\x00.txt", "_NUL.txt"),
        ("line\nbreak\r\t.pdf", "linebreak.pdf"),
        ("cv\u202efdp.exe", "cvfdp.exe"),  # right-to-left override: "cvexe.pdf" to the eye
        ('a<b>c:d"e|f?g*h.txt', "a_b_c_d_e_f_g_h.txt"),
        (" .hidden. ", "hidden"),
        ("履歴書 山田.pdf", "履歴書 山田.pdf"),
    ],
)
def test_safe_filename(name: str, safe: str) -> None:
    assert safe_filename(name) == safe


def test_long_names_keep_their_extension_within_the_byte_limit() -> None:
    name = safe_filename("職" * 300 + ".docx")
    assert name.endswith(".docx") and len(name.encode()) <= 200


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("cv.pdf", "attachment; filename=\"cv.pdf\"; filename*=UTF-8''cv.pdf"),
        (
            "履歴書.pdf",
            "attachment; filename=\"attachment.pdf\"; filename*=UTF-8''%E5%B1%A5%E6%AD%B4%E6%9B%B8.pdf",
        ),
        (
            "Café résumé.pdf",
            "attachment; filename=\"Cafe resume.pdf\"; filename*=UTF-8''Caf%C3%A9%20r%C3%A9sum%C3%A9.pdf",
        ),
        (
            '50%; x="y".txt',
            "attachment; filename=\"50__ x=_y_.txt\"; filename*=UTF-8''50%25%3B%20x%3D%22y%22.txt",
        ),
    ],
)
def test_content_disposition_has_an_ascii_fallback_and_utf8_name(name: str, header: str) -> None:
    assert attachment_disposition(name) == header


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        # Full-width forms fold (NFKC) to a device name or to separators.
        ("ＣＯＮ.txt", "_ＣＯＮ.txt"),
        ("ａｕｘ", "_ａｕｘ"),
        ("．．／．．／etc／passwd", "．．_．．_etc_passwd"),
        ("a＼b：c.txt", "a_b_c.txt"),
        ("con\u3000.txt", "_con\u3000.txt"),  # an ideographic space after the device name
        ("\ufeffCON.txt", "_CON.txt"),  # a byte-order mark in front
        ("CONTRACT.pdf", "CONTRACT.pdf"),
    ],
)
def test_safe_filename_judges_compatibility_forms_by_what_they_fold_to(
    name: str, safe: str
) -> None:
    """Found by the hostile corpus (tests/mailboxes/eml/hostile/58_name_unicode_disguises)."""
    assert safe_filename(name) == safe


@pytest.mark.parametrize(
    ("name", "ascii_name"),
    [
        ("ＣＯＮ.txt", "_CON.txt"),
        ("_ＣＯＮ.txt", "_CON.txt"),
        ("ｌｐｔ１.log", "_lpt1.log"),
        ("．．_．．_etc_passwd", "_.._etc_passwd"),
        ("．htaccess", "attachment.htaccess"),
    ],
)
def test_ascii_fallback_is_safe_on_its_own(name: str, ascii_name: str) -> None:
    """NFKD folding for the ASCII ``filename`` must not bring back a device name or a dot file."""
    header = attachment_disposition(name)
    assert header.startswith(f'attachment; filename="{ascii_name}"; '), header


@pytest.mark.parametrize(
    ("value", "served"),
    [
        ("image/png", "image/png"),
        ("Text/HTML ", "text/html"),
        ("text/html; charset=x", "application/octet-stream"),
        ("text/html\r\nSet-Cookie: a=b", "application/octet-stream"),
        ("", "application/octet-stream"),
    ],
)
def test_content_type_is_a_plain_type_or_octet_stream(value: str, served: str) -> None:
    assert safe_content_type(value) == served


def test_inline_image_tokens_name_one_attachment_and_one_reader() -> None:
    token = inline_image_token(attachment_id=7, user_id=3)
    assert inline_image_reader(token=token, attachment_id=7) == 3
    assert inline_image_reader(token=token, attachment_id=8) is None
    assert inline_image_reader(token=token + "x", attachment_id=7) is None
    assert inline_image_reader(token="garbage", attachment_id=7) is None
