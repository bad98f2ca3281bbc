"""Paging long lists without counting them to the end."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.core.paginator import Page, Paginator

# Lists count their rows up to here ("More than 200"): an exact count reads every row the user
# may see (a second and more at a million messages, tens of milliseconds for 100,000
# records), counting up to a limit reads at most that many (bench/visibility.py, bench/pages.py).
COUNT_CAP = 200


class CappedPaginator(Paginator):
    """A paginator that counts no further than it needs.

    The limit is past the requested page, so "next" works as deep as anyone pages; past the
    limit the list says "Page N" (and "200+") instead of a total.
    """

    def __init__(self, object_list: Any, per_page: int, *, limit: int) -> None:
        super().__init__(object_list, per_page)
        self.limit = limit

    @cached_property
    def count(self) -> int:
        # Only the rows' ids: the list's per-row columns (a correlated subquery, say) would
        # otherwise run for every counted row, which made the count cost as much as the page
        # itself (bench/load.py --profile-pages). Ordered by the list's leading sort key, which
        # changes no count but lets PostgreSQL read the list's own index and stop at the cap,
        # as the page does, instead of collecting every row of a big mailbox first (24 -> 2 ms
        # for a 26,000-message Inbox, bench/pages.py).
        ordering = self.object_list.query.order_by[:1]
        return self.object_list.order_by(*ordering).values("pk")[: self.limit].count()

    @property
    def capped(self) -> bool:
        """True when there are more rows than were counted (show "200+", not a total)."""
        return self.count >= self.limit

    @property
    def count_label(self) -> str:
        return f"{self.count_floor:,}+" if self.capped else f"{self.count:,}"

    @property
    def count_floor(self) -> int:
        """When capped: there are more than this many."""
        return self.limit - 1


def wanted_page(number: Any) -> int:
    """The page number asked for; 1 when it is missing or malformed."""
    try:
        return max(1, min(int(number), 1_000_000))
    except (TypeError, ValueError):
        return 1


def capped_page(
    object_list: Any, *, per_page: int, number: Any, count_cap: int = COUNT_CAP
) -> Page:
    """One page of ``object_list``, counted up to ``count_cap`` or just past the page, whichever
    is further; a missing, malformed or too-large number gives a valid page."""
    limit = max(count_cap, (wanted_page(number) + 1) * per_page) + 1
    return CappedPaginator(object_list, per_page, limit=limit).get_page(number)
