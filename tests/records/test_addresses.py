from __future__ import annotations

import pytest

from records.addresses import InvalidAddress, normalize_address, try_normalize_address


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Taro.Yamada@Example.JP", "taro.yamada@example.jp"),
        ("  hana@acme.example  ", "hana@acme.example"),
        ("taro@例え.jp", "taro@xn--r8jz45g.jp"),
        ("taro@XN--R8JZ45G.JP", "taro@xn--r8jz45g.jp"),
        ("taro@bücher.de", "taro@xn--bcher-kva.de"),
        ("a+tag@mail.example.com.", "a+tag@mail.example.com"),
    ],
)
def test_normalises_case_and_idn(raw: str, expected: str) -> None:
    assert normalize_address(raw) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "taro",
        "taro@",
        "@example.com",
        "a@@example.com",
        "taro yamada@example.com",
        "taro@localhost",
        "taro@-bad-.example",
        "taro..y@example.com",
        ".taro@example.com",
        "x" * 250 + "@example.com",
    ],
)
def test_rejects_what_is_not_an_address(bad: str) -> None:
    with pytest.raises(InvalidAddress):
        normalize_address(bad)
    assert try_normalize_address(bad) is None
