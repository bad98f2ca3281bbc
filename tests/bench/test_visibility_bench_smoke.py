"""bench/visibility.py still runs: a --quick run (20,000 messages) against the local PostgreSQL
exits 0 and prints its table. No timing is asserted: figures are for a person to read."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.peers.postgresql import postgresql_server_url

REPO = Path(__file__).resolve().parents[2]


def _bench_database_url() -> str:
    return postgresql_server_url(database="recruitmail_visbench_smoke")


def _run(script: str, *arguments: str) -> str:
    """Run ``bench/<script>`` on the smoke database; its output, after checking it exited 0."""
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *arguments]
        + ["--database-url", _bench_database_url()],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def test_quick_run_exits_zero_and_prints_its_table() -> None:
    output = _run("visibility.py", "--quick")
    assert "Loaded 20 users, 2,000 records, 20,000 messages" in output
    assert "page         viewer" in output
    for page in ("inbox", "record page", "thread", "search"):
        for viewer in ("recruiter", "admin", "owner", "no rule"):
            assert any(
                line.startswith(f"{page:<12} {viewer:<10}") for line in output.splitlines()
            ), f"no {page} row for {viewer}:\n{output[-4000:]}"
    assert "same query count at 25 and 100:" in output


def test_page_run_on_the_quick_data_answers_every_page() -> None:
    """bench/pages.py, on what the quick run above loaded: every page answers 200 (else it
    exits non-zero) and gets its line."""
    _run("visibility.py", "--quick", "--repeat", "1")
    output = _run("pages.py", "--repeat", "2")
    for page in ("inbox", "search", "record page", "message", "sharing"):
        for viewer in ("recruiter", "admin", "owner"):
            assert any(
                line.startswith(f"{page:<15} {viewer:<10}") for line in output.splitlines()
            ), f"no {page} row for {viewer}:\n{output[-4000:]}"
    assert "Target: p95 under 50 ms server time per page:" in output
    # --queries: one page's queries, each with its time, and their sum.
    output = _run("pages.py", "--repeat", "2", "--queries", "recruiter", "sent")
    timed = [line for line in output.splitlines() if re.match(r"\s+\d+\.\d\d ms  ", line)]
    assert any("SELECT COUNT(*)" in line for line in timed), output[-4000:]
    assert timed[-1].endswith("ms  in all"), output[-4000:]
