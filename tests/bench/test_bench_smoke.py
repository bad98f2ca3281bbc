"""bench/ingest.py still runs: a --quick run (300 messages through a private Dovecot into the
local PostgreSQL) exits 0 and prints every figure. No timing is asserted: figures are for a
person to read (docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.peers.postgresql import postgresql_server_url

REPO = Path(__file__).resolve().parents[2]


def test_quick_run_exits_zero_and_prints_every_figure() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "ingest.py"),
            "--quick",
            "--database-url",
            postgresql_server_url(database="recruitmail_bench_smoke"),
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
    for start in (
        "== N = 300 messages",
        "(a1) poplib RETR only:",
        "(a2) poplib RETR + email parse:",
        "(b)  RecruitMail full import:",
        "(b)/(a2) ratio:",
        "(b)  queries:",
        "(b)  peak worker memory:",
        "(c)  incremental poll, nothing new:",
        "(d)  incremental poll, 10 new:",
        "== Targets",
    ):
        assert any(line.startswith(start) for line in lines), f"no {start!r} line:\n{output}"
    assert "(300 imported" in output
    assert "(10 imported)" in output
    assert "IMPORT PROBLEMS" not in output
