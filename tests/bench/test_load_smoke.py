"""bench/load.py still runs: a --quick run (10 simulated recruiters under locust against
gunicorn, while two real Celery workers import mail from a private Dovecot, on its own
PostgreSQL database) exits 0, prints requests per second and the latency of every page, and
no request failed. No latency is asserted: figures are for a person to read
(docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys

from tests.bench.test_bench_smoke import REPO
from tests.peers.postgresql import postgresql_server_url


def test_quick_run_exits_zero_with_no_errors_and_prints_every_figure() -> None:
    database_url = postgresql_server_url(database="recruitmail_loadbench_smoke")
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "load.py"),
            "--quick",
            "--database-url",
            database_url,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    lines = output.splitlines()
    requests = next(line for line in lines if line.startswith("requests: "))
    assert "requests/s; errors: 0" in requests, output
    for page in (
        "inbox",
        "record page",
        "search",
        "sign in ",
        "all pages (sign-in excluded)",
        "all requests",
    ):
        assert any(line.startswith(page) for line in lines), f"no {page!r} line:\n{output}"
    assert any(line.startswith("import: ") and " of 200 messages" in line for line in lines)
    assert any(line.startswith("== Targets: zero errors: 0 -> holds") for line in lines), output
    assert not any(line.startswith("error: ") for line in lines), output
