"""The feed parser's end-of-string line-break search, replaced for speed (mailboxes.mime),
finds exactly what the stdlib's regular expression finds."""

from __future__ import annotations

import random
import re
from email import feedparser

from mailboxes.mime import _LineEndAtEnd

STDLIB = re.compile(r"(\r\n|\r|\n)\Z")  # email.feedparser.NLCRE_eol, as the stdlib defines it


def _same(text: str) -> None:
    expected, found = STDLIB.search(text), _LineEndAtEnd().search(text)
    if expected is None:
        assert found is None, repr(text)
    else:
        assert found is not None, repr(text)
        assert (found.group(0), found.span()) == (expected.group(0), expected.span()), repr(text)


def test_the_same_match_as_the_stdlib_pattern() -> None:
    for text in ["", "\n", "\r", "\r\n", "\n\r", "\r\n\n", "\n\r\n", "a", "a\r\n", "a\rb", "ab\r"]:
        _same(text)
    rng = random.Random(7)  # noqa: S311 -- test data
    for _ in range(5000):
        _same("".join(rng.choices("ab\r\n", k=rng.randint(0, 6))))


def test_installed_for_the_feed_parser() -> None:
    assert isinstance(feedparser.NLCRE_eol, _LineEndAtEnd)
