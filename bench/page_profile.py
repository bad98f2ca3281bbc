"""Where the time of each page of ``bench/load.py`` goes (its ``--profile-pages N``).

Run in the benchmark's process on its data once the load has stopped, through Django's test
client (no network, no gunicorn): the median of 10 requests, the queries with their time,
the N costliest calls (cProfile, by cumulative time) and the three slowest queries.
"""

from __future__ import annotations

import time


def pages_profile(*, email: str, records: list[str], top: int) -> None:
    """Where a page's time goes, measured in this process on the run's data (after the run):
    median time of 10 requests, queries and their time, and the functions that cost most."""
    import cProfile
    import io
    import pstats
    import re

    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from records.models import User

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(User.objects.get(email=email))
    inbox = client.get("/mail/inbox/").content.decode()
    message = re.search(r'href="(/mail/messages/\d+/)"', inbox)
    pages = {
        "inbox": "/mail/inbox/",
        "shared with me": "/mail/shared/",
        "record page": records[0],
        "search": "/mail/search/?q=interview",
    }
    if message:
        pages["message page"] = message.group(1)
    for name, path in pages.items():
        for _ in range(3):
            client.get(path)  # warm: templates compiled, caches filled
        seconds = []
        for _ in range(10):
            started = time.perf_counter()
            response = client.get(path)
            seconds.append(time.perf_counter() - started)
        connection.queries_log.clear()
        with CaptureQueriesContext(connection) as context:
            client.get(path)
        queries = list(context.captured_queries)
        sql_ms = sum(float(query["time"]) for query in queries) * 1000
        profiler = cProfile.Profile()
        profiler.enable()
        client.get(path)
        profiler.disable()
        print(
            f"== profile: {name} ({path}): status {response.status_code},"
            f" median {sorted(seconds)[len(seconds) // 2] * 1000:.0f} ms in this process,"
            f" {len(queries)} queries taking {sql_ms:.0f} ms"
        )
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(top)
        print("\n".join(line for line in text.getvalue().splitlines() if line.strip()))
        slowest = sorted(queries, key=lambda q: -float(q["time"]))[:3]
        for query in slowest:
            print(f"   slowest query {float(query['time']) * 1000:.0f} ms: {query['sql'][:3000]}")
