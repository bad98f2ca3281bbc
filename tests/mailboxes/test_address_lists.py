"""mailboxes.address_lists: RFC 5322 address lists read into normalised correspondents."""

from __future__ import annotations

import pytest

from mailboxes.address_lists import Correspondent, parse_addresses, split_address_list


def test_invalid_addresses_are_left_out_and_noted() -> None:
    correspondents, defects = parse_addresses(
        'Taro <Taro@Example.JP>, "Bad" <not-an-address>, undisclosed-recipients:;, '
        "=?UTF-8?B?6Iqx5a2Q?= <hanako@例え.jp>",
        "To",
    )

    assert correspondents == [
        Correspondent("Taro", "taro@example.jp"),
        Correspondent("花子", "hanako@xn--r8jz45g.jp"),
    ]
    assert defects == ["To: ignored 'not-an-address', which is not an email address"]


@pytest.mark.parametrize(
    ("header", "pairs"),
    [
        ('"Yamada, Taro" <taro@x.jp>, b@y.jp', [("Yamada, Taro", "taro@x.jp"), ("", "b@y.jp")]),
        ("c@z.jp (Old Style)", [("Old Style", "c@z.jp")]),
        ("Team: a@x.jp, b@x.jp;, c@x.jp", [("", "a@x.jp"), ("", "b@x.jp"), ("", "c@x.jp")]),
        ("<@relay.example:d@x.jp>", [("", "d@x.jp")]),
        ('"unterminated <e@x.jp>', [("", "unterminated <e@x.jp>")]),
        ("Name <f@x.jp", [("Name", "f@x.jp")]),
        ("undisclosed-recipients:;", []),
        (",, ,", []),
    ],
)
def test_address_list_grammar(header: str, pairs: list[tuple[str, str]]) -> None:
    assert split_address_list(header) == pairs
