"""bench/scale.py still runs: a --quick run (16 mailboxes on a private Dovecot, polled by one
and then two real Celery workers on Redis, into its own PostgreSQL database) exits 0, prints
its figures, and found no mailbox polled twice at once, no failed poll and no duplicate. No
timing is asserted: figures are for a person to read (docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys

from tests.bench.test_bench_smoke import REPO
from tests.peers.postgresql import postgresql_server_url


def test_quick_run_exits_zero_and_prints_every_figure() -> None:
    database_url = postgresql_server_url(database="recruitmail_scalebench_smoke")
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "scale.py"),
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
    lines = [line.strip() for line in output.splitlines()]
    for workers in ("== 1 worker:", "== 2 workers:"):
        assert any(
            line.startswith(workers) and "mailboxes polled per minute" in line for line in lines
        ), output
    assert sum(line.startswith("scheduler lag: p50") for line in lines) == 2, output
    assert sum(line.startswith("poll length: mean") for line in lines) == 2, output
    assert (
        sum(
            line.startswith("overlapping polls of one mailbox: 0; failed polls: 0; unfinished: 0")
            for line in lines
        )
        == 2
    ), output
    checks = next(line for line in lines if line.startswith("== Checks:"))
    assert "two polls of one mailbox at once: 0" in checks and "duplicates: 0" in checks
    assert "PROBLEMS" not in output
