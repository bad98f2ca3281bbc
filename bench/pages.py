"""Page benchmark: the server time of every main page, whole, on the 1,000,000-message data set.

    .venv/bin/python bench/visibility.py            # loads recruitmail_visbench (once)
    .venv/bin/python bench/pages.py                 # then measures the pages on it

Where ``bench/visibility.py`` times the querysets behind the lists, this times what a browser
waits for on the server: a GET through Django's full stack (middleware, sessions, the view, its
queries, the template, WhiteNoise's collected static file names) with the test client, in
process, as a signed-in user. Pages: Inbox, Sent, Shared with me, the client folder (where the mailbox has it), search for
a word in about 1 % of the mail, a record page whose record has 200 messages, a message page
(and its sandboxed frame, for HTML mail), the candidate list, the mail settings and sharing pages, and for the
admin the organisation's mail settings and the audit trail. Viewers: the recruiter with a
Private mailbox, an admin and the owner of the busiest Public mailbox (as in
``bench/visibility.py``). Each page runs once to warm up, then ``--repeat`` times; it prints p50
and p95 server time and the number of queries.

It exits non-zero when a page does not answer 200, never for a missed target.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.visibility import DEFAULT_DATABASE_URL, _landmarks_of_last_load  # noqa: E402

TARGET_P95_MS = 50.0


def _pages(landmarks: Any, user: Any) -> dict[str, str]:
    from django.urls import reverse

    from bench.visibility_data import SEARCH_TERM
    from mailboxes.models import Mailbox, Message
    from records.models import Record

    record = Record.objects.get(pk=landmarks.record_id)
    newest = Message.objects.visible_to(user).filter(deleted_at=None).order_by("-sort_at").first()
    mailbox = Mailbox.objects.filter(owner=user, is_active=True).first()
    pages = {
        "inbox": reverse("mail:inbox"),
        "sent": reverse("mail:sent"),
        "shared with me": reverse("mail:shared"),
        "search": reverse("mail:search") + f"?q={SEARCH_TERM}",
        "record page": reverse(f"records:{record.kind}_detail", args=[record.pk]),
        "candidates": reverse("records:candidate_list"),
        "mail settings": reverse("mailboxes:list"),
    }
    from mailboxes.selectors import consolidates_client_mail

    if mailbox is not None and consolidates_client_mail(mailbox):
        pages["client folder"] = reverse("mail:client_folder")
    if newest is not None:
        pages["message"] = reverse("mail:message", args=[newest.pk])
        if newest.body_html:  # the frame exists for HTML mail only
            pages["message frame"] = reverse("mail:message_body", args=[newest.pk])
    if mailbox is not None:
        pages["sharing"] = reverse("sharing:mailbox", args=[mailbox.pk])
    if user.membership.role == "admin":
        pages["admin mail"] = reverse("sharing:admin")
        pages["audit trail"] = reverse("sharing:audit")
    return pages


VIEWERS = ("recruiter", "admin", "owner")


def _viewer_ids(landmarks: Any) -> dict[str, int]:
    return {
        "recruiter": landmarks.recruiter_id,
        "admin": landmarks.admin_id,
        "owner": landmarks.owner_id,
    }


def page_queries(landmarks: Any, viewer: str, page: str, repeat: int) -> None:
    """Print each query of one page with its median time over ``repeat`` runs (``--queries``):
    where a page's SQL time goes."""
    from django.db import connection
    from django.test import Client

    from records.models import User

    user = User.objects.select_related("membership").get(pk=_viewer_ids(landmarks)[viewer])
    client = Client()
    client.force_login(user)
    url = _pages(landmarks, user)[page]
    client.get(url)  # warm-up
    runs: list[list[tuple[float, str]]] = []

    def timer(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        begin = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            runs[-1].append(((time.perf_counter() - begin) * 1000, sql))

    for _ in range(repeat):
        runs.append([])
        with connection.execute_wrapper(timer):
            client.get(url)
    print(f"\n{page} ({viewer}, {url}): median of {repeat} runs")
    for index, (_, sql) in enumerate(runs[-1]):
        median = statistics.median(run[index][0] for run in runs if len(run) > index)
        print(f"{median:8.2f} ms  {sql[:110]}")
    total = statistics.median(sum(ms for ms, _ in run) for run in runs)
    print(f"{total:8.2f} ms  in all")


def measure(landmarks: Any, repeat: int) -> list[tuple[str, str, float, float, int]]:
    from django.db import connection
    from django.test import Client

    from records.models import User

    results = []
    for viewer, pk in _viewer_ids(landmarks).items():
        user = User.objects.select_related("membership").get(pk=pk)
        client = Client()
        client.force_login(user)
        for page, url in _pages(landmarks, user).items():
            queries = 0

            def counted(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
                nonlocal queries
                queries += 1
                return execute(sql, params, many, context)

            response = client.get(url)  # warm-up
            if response.status_code != 200:
                raise SystemExit(f"{page} ({viewer}) answered {response.status_code}: {url}")
            samples = []
            for _ in range(repeat):
                queries = 0
                with connection.execute_wrapper(counted):
                    begin = time.perf_counter()
                    response = client.get(url)
                    if hasattr(response, "streaming_content"):
                        b"".join(response.streaming_content)
                    else:
                        response.content  # noqa: B018 (rendered already; make sure)
                    samples.append((time.perf_counter() - begin) * 1000)
            samples.sort()
            p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
            results.append((page, viewer, statistics.median(samples), p95, queries))
    return results


def main(argv: list[str] | None = None) -> int:
    from cryptography.fernet import Fernet

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument(
        "--queries",
        nargs=2,
        metavar=("VIEWER", "PAGE"),
        help=f"print one page's queries with their median time instead (VIEWER: {', '.join(VIEWERS)};"
        ' PAGE as in the table, e.g. "sent")',
    )
    args = parser.parse_args(argv)
    static_root = tempfile.mkdtemp(prefix="recruitmail-bench-static-")
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "recruitmail.settings",
            "DATABASE_URL": args.database_url,
            "DEBUG": "false",
            "SECRET_KEY": os.environ.get("SECRET_KEY") or "bench-secret-key-not-for-production",
            "FERNET_KEYS": os.environ.get("FERNET_KEYS") or Fernet.generate_key().decode(),
            "ALLOWED_HOSTS": "testserver",
            "STATIC_ROOT": static_root,
            "LOG_LEVEL": "WARNING",
        }
    )
    from django.core.management import call_command

    # Start as the web process does (recruitmail/wsgi.py: django.setup(), then gc.freeze() of
    # what starting made), so that the collector's passes cost here what they cost there.
    import recruitmail.wsgi  # noqa: F401

    call_command("collectstatic", interactive=False, verbosity=0)  # as the image does
    landmarks = _landmarks_of_last_load()
    print(
        f"RecruitMail page benchmark: {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f}, database {args.database_url.rsplit('@', 1)[-1]}"
    )
    if args.queries:
        page_queries(landmarks, *args.queries, repeat=args.repeat)
        return 0
    results = measure(landmarks, args.repeat)
    print(f"\n{'page':<15} {'viewer':<10} {'p50 ms':>8} {'p95 ms':>8} {'queries':>8}")
    for page, viewer, p50, p95, queries in results:
        print(f"{page:<15} {viewer:<10} {p50:>8.1f} {p95:>8.1f} {queries:>8}")
    slow = [f"{page} {viewer} ({p95:.0f} ms)" for page, viewer, _, p95, _ in results if p95 >= 50]
    print(
        f"\nTarget: p95 under {TARGET_P95_MS:.0f} ms server time per page: "
        + ("held" if not slow else "MISSED: " + "; ".join(slow))
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
