"""Visibility benchmark: what the one visibility rule costs on a page, at a realistic size.

    .venv/bin/python bench/visibility.py                  # 100 users, 100,000 records, 1,000,000 messages
    .venv/bin/python bench/visibility.py --quick          # 20,000 messages: a smoke run for CI
    .venv/bin/python bench/visibility.py --skip-load      # measure again what the last run loaded

It drops and recreates its own PostgreSQL database (``--database-url``; the name must contain
"bench"), migrates it, loads the data set described in ``bench/visibility_data.py`` with COPY,
runs VACUUM ANALYZE, and then measures, as a recruiter who is not the mailbox owner (through
``Message.objects.visible_to``), as an admin (same), as the owner of a busy Public mailbox (same),
and without the rule ("no rule": the organisation's messages, the baseline):

- inbox: newest first;
- record page: the messages linked to a record that has 200, newest first;
- thread: a thread's messages, oldest first;
- search: subject or body ``icontains`` a word found in about 1 % of bodies, newest first.

Each page is a page size (25 and 100) of messages without their bodies, with their records
prefetched for the record chips: what a list view will load. Server time is the time to run the
page's queries and build its objects (``list(queryset)``), repeated (``--repeat``, after one
warm-up run) and reported as p50/p95; queries are counted with ``connection.execute_wrapper``.
"x no rule" is the page's p95 divided by the same page's p95 without the rule.

It exits non-zero when the data or a page is wrong (a landmark missing, a page with the wrong
number of rows), never for a missed performance target: the targets are printed, held or missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/recruitmail_visbench"
QUICK = {"users": 20, "records": 2_000, "messages": 20_000, "repeat": 5}
PAGE_SIZES = (25, 100)
# Targets from the issue.
TARGET_P95_MS = 50.0
TARGET_RATIO = 1.5


@dataclass
class Result:
    page: str
    viewer: str
    size: int
    p50_ms: float
    p95_ms: float
    queries: int
    rows: int
    ratio: float | None = None


def _recreate_database(database_url: str) -> None:
    """Drop and create the benchmark's database (its name is the URL's path)."""
    import environ
    import psycopg2
    from psycopg2 import sql

    config = environ.Env.db_url_config(database_url)
    name = config["NAME"]
    if "bench" not in name:
        raise SystemExit(f"refusing to drop database {name!r}: its name must contain 'bench'")
    admin = psycopg2.connect(
        dbname="postgres",
        user=config.get("USER") or "postgres",
        password=config.get("PASSWORD") or None,
        host=config.get("HOST") or "127.0.0.1",
        port=config.get("PORT") or 5432,
    )
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    admin.close()


def _pages(landmarks: Any) -> dict[str, Callable[[Any], Any]]:
    """Each page as a function of the queryset it starts from (with or without the rule)."""
    from django.db.models import Q

    from bench.visibility_data import SEARCH_TERM

    return {
        "inbox": lambda messages: messages.order_by("-sort_at", "-pk"),
        "record page": lambda messages: messages.filter(links__record=landmarks.record_id).order_by(
            "-sort_at", "-pk"
        ),
        "thread": lambda messages: messages.filter(thread=landmarks.thread_id).order_by(
            "sort_at", "pk"
        ),
        "search": lambda messages: messages.filter(
            Q(subject__icontains=SEARCH_TERM) | Q(body_text__icontains=SEARCH_TERM)
        ).order_by("-sort_at", "-pk"),
    }


def _viewers(landmarks: Any) -> dict[str, Callable[[], Any]]:
    from mailboxes.models import Message
    from records.models import User

    def through_rule(user_id: int) -> Callable[[], Any]:
        def messages() -> Any:
            # As a request has it: the access check has loaded the user and the membership.
            user = User.objects.select_related("membership").get(pk=user_id)
            return lambda: Message.objects.visible_to(user)

        return messages

    return {
        "recruiter": through_rule(landmarks.recruiter_id),
        "admin": through_rule(landmarks.admin_id),
        "owner": through_rule(landmarks.owner_id),
        "no rule": lambda: (
            lambda: Message.objects.filter(organization_id=landmarks.organization_id)
        ),
    }


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _measure_page(page: Callable[[], Any], repeat: int, budget_seconds: float) -> tuple:
    """Run ``page()`` once to warm up, then up to ``repeat`` times (at least 5 within the
    budget); return (p50 ms, p95 ms, queries of one page, rows)."""
    from django.db import connection

    queries = 0

    def count(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    rows = len(page())
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < repeat:
        queries = 0
        with connection.execute_wrapper(count):
            begin = time.perf_counter()
            rows = len(page())
            samples.append((time.perf_counter() - begin) * 1000)
        if len(samples) >= 5 and time.perf_counter() - started > budget_seconds:
            break
    return statistics.median(samples), _percentile(samples, 0.95), queries, rows


def measure(landmarks: Any, *, repeat: int, budget_seconds: float) -> list[Result]:
    from bench.visibility_data import BIG_THREAD_MESSAGES, RECORD_PAGE_MESSAGES

    pages = _pages(landmarks)
    results: list[Result] = []
    for viewer_name, start in _viewers(landmarks).items():
        messages = start()
        for page_name, narrow in pages.items():
            for size in PAGE_SIZES:

                def page(
                    narrow: Callable[[Any], Any] = narrow,
                    size: int = size,
                    messages: Callable[[], Any] = messages,
                ) -> list:
                    listed = narrow(messages()).defer("body_text", "body_html", "references")
                    return list(listed.prefetch_related("records")[:size])

                p50, p95, queries, rows = _measure_page(page, repeat, budget_seconds)
                results.append(Result(page_name, viewer_name, size, p50, p95, queries, rows))
    baseline = {(r.page, r.size): r.p95_ms for r in results if r.viewer == "no rule"}
    for result in results:
        result.ratio = result.p95_ms / baseline[(result.page, result.size)]
    expected_rows = {
        ("record page", "no rule"): RECORD_PAGE_MESSAGES,
        ("thread", "no rule"): BIG_THREAD_MESSAGES,
    }
    problems = [
        f"{r.page} {r.viewer} at {r.size}: {r.rows} rows, expected {min(r.size, expected_rows[(r.page, r.viewer)])}"
        for r in results
        if (r.page, r.viewer) in expected_rows
        and r.rows != min(r.size, expected_rows[(r.page, r.viewer)])
    ]
    problems += [
        f"{r.page} {r.viewer} at {r.size}: no rows"
        for r in results
        if r.rows == 0 and r.page in ("inbox", "search")
    ]
    if problems:
        raise SystemExit("BENCHMARK PROBLEMS:\n  " + "\n  ".join(problems))
    return results


def _visible_totals(landmarks: Any) -> dict[str, tuple[int, float]]:
    """How much each viewer sees in all (one count each, timed: a paginator would run it)."""
    totals = {}
    for name, start in _viewers(landmarks).items():
        messages = start()
        begin = time.perf_counter()
        total = messages().count()
        totals[name] = (total, (time.perf_counter() - begin) * 1000)
    return totals


def print_report(results: list[Result], totals: dict[str, tuple[int, float]]) -> None:
    print("\nVisible messages (one count(*) each, as a paginator would run it):")
    for name, (total, milliseconds) in totals.items():
        print(f"  {name:<10} {total:>10,}   count took {milliseconds:,.0f} ms")
    print(
        f"\n{'page':<12} {'viewer':<10} {'size':>4} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'queries':>7} {'rows':>5} {'x no rule':>9}"
    )
    for r in results:
        print(
            f"{r.page:<12} {r.viewer:<10} {r.size:>4} {r.p50_ms:>8.1f} {r.p95_ms:>8.1f} "
            f"{r.queries:>7} {r.rows:>5} {r.ratio:>9.2f}"
        )
    ruled = [r for r in results if r.viewer != "no rule"]
    slow = [r for r in ruled if r.p95_ms >= TARGET_P95_MS]
    costly = [r for r in ruled if r.viewer != "owner" and (r.ratio or 0) > TARGET_RATIO]
    counts = {(r.page, r.viewer): set() for r in results}
    for r in results:
        counts[(r.page, r.viewer)].add(r.queries)
    uneven = [f"{page} {viewer}" for (page, viewer), seen in counts.items() if len(seen) > 1]

    def verdict(misses: list[str]) -> str:
        return "held" if not misses else "MISSED: " + "; ".join(misses)

    print("\nTargets:")
    print(
        f"  p95 under {TARGET_P95_MS:.0f} ms per page: "
        + verdict([f"{r.page} {r.viewer} {r.size} ({r.p95_ms:.0f} ms)" for r in slow])
    )
    print(f"  same query count at {PAGE_SIZES[0]} and {PAGE_SIZES[1]}: " + verdict(uneven))
    print(
        f"  filtered page at most {TARGET_RATIO}x the unfiltered one (recruiter, admin): "
        + verdict([f"{r.page} {r.viewer} {r.size} ({r.ratio:.1f}x)" for r in costly])
    )


def explain(landmarks: Any) -> None:
    """EXPLAIN ANALYZE of each page for the recruiter, page size 25."""
    user_messages = _viewers(landmarks)["recruiter"]()
    for name, narrow in _pages(landmarks).items():
        listed = narrow(user_messages()).defer("body_text", "body_html", "references")[:25]
        print(f"\n--- {name} (recruiter, 25)\n{listed.explain(analyze=True, buffers=True)}")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50, help="runs of each page (default 50)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20,000 messages")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument(
        "--skip-load", action="store_true", help="measure the database the last run loaded"
    )
    parser.add_argument("--explain", action="store_true", help="print the recruiter's plans")
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> int:
    from cryptography.fernet import Fernet

    args = _arguments(argv)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "recruitmail.settings",
            "DATABASE_URL": args.database_url,
            "DEBUG": "false",  # with DEBUG on, Django keeps the text of every query
            "SECRET_KEY": os.environ.get("SECRET_KEY") or "bench-secret-key-not-for-production",
            # No mailbox password is stored or read: any key will do.
            "FERNET_KEYS": os.environ.get("FERNET_KEYS") or Fernet.generate_key().decode(),
            "LOG_LEVEL": "WARNING",
        }
    )
    if not args.skip_load:
        _recreate_database(args.database_url)
    import django

    django.setup()
    from django.core.management import call_command

    from bench.visibility_data import Landmarks, load

    print(
        f"RecruitMail visibility benchmark: {os.cpu_count()} cores, Python "
        f"{sys.version.split()[0]}, PostgreSQL at {args.database_url.rsplit('@', 1)[-1]}"
    )
    if args.skip_load:
        landmarks = _landmarks_of_last_load()
    else:
        call_command("migrate", verbosity=0, interactive=False)
        started = time.perf_counter()
        landmarks: Landmarks = load(users=args.users, records=args.records, messages=args.messages)
        print(
            f"Loaded {args.users:,} users, {args.records:,} records, {args.messages:,} messages "
            f"in {time.perf_counter() - started:,.0f} s (COPY, then VACUUM ANALYZE)"
        )
    if args.explain:
        explain(landmarks)
    budget = 2.0 if args.quick else 15.0
    results = measure(landmarks, repeat=args.repeat, budget_seconds=budget)
    print_report(results, _visible_totals(landmarks))
    return 0


def _landmarks_of_last_load() -> Any:
    """The landmarks, found again in a database that ``load`` filled (same rules)."""
    from bench.visibility_data import Landmarks
    from mailboxes.models import Message
    from records.models import Membership
    from sharing.models import MailboxSharing

    membership = Membership.objects.select_related("organization").first()
    if membership is None:
        raise SystemExit("nothing loaded yet: run once without --skip-load")
    private = MailboxSharing.objects.filter(
        permission="private", mailbox__owner__membership__role="recruiter"
    )
    public = MailboxSharing.objects.filter(permission="public").values_list(
        "mailbox__owner_id", flat=True
    )
    busiest = max(public, key=lambda owner_id: Message.objects.filter(owner_id=owner_id).count())
    return Landmarks(
        organization_id=membership.organization_id,
        recruiter_id=private.order_by("mailbox__owner_id").values_list(
            "mailbox__owner_id", flat=True
        )[0],
        admin_id=Membership.objects.filter(role="admin").order_by("user_id")[0].user_id,
        owner_id=busiest,
        record_id=1,
        thread_id=1,
    )


if __name__ == "__main__":
    raise SystemExit(main())
