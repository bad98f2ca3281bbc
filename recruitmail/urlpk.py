"""URLs of many rows from one ``reverse()``: for pages that link every row of a list."""

from __future__ import annotations

from collections.abc import Callable

from django.urls import reverse

# A primary key no row has, reversed once to learn the text around a pk in a URL.
SENTINEL_PK = 2_147_483_647


def url_pattern(url_of_sentinel: str) -> Callable[[int], str]:
    """The URL for any pk, from the URL for ``SENTINEL_PK``: one ``reverse()`` per page
    instead of one per row (the text around the pk is the same for every pk)."""
    head, tail = url_of_sentinel.split(str(SENTINEL_PK))
    return lambda pk: f"{head}{pk}{tail}"


def url_with_pk(name: str) -> Callable[[int], str]:
    """``url_pattern`` of the view ``name``, which takes one pk."""
    return url_pattern(reverse(name, args=[SENTINEL_PK]))
