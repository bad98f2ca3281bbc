"""Workers killed at random moments lose no message and import none twice (bench/crash.py).

The script runs in its own process: it configures Django for a scratch database of its own (a
new PostgreSQL database beside DATABASE_URL, or a SQLite file), starts its own Dovecot, and
starts and SIGKILLs real ``manage.py poll`` workers. The CI variant is small; run the script
by hand with ``--kills 200`` for a longer hunt.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_killed_workers_lose_nothing_and_import_nothing_twice() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "crash.py"), "--kills", "20", "--messages", "120"],
        cwd=ROOT,
        env=os.environ,  # DATABASE_URL picks PostgreSQL; the script makes its own database
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    print(result.stdout, result.stderr, sep="\n")  # the per-kill table, shown with -s or on failure
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = re.search(r"crash test OK: 20 kills \((\d+) mid-import", result.stdout)
    assert summary is not None, result.stdout[-3000:]
    # Calibrated delays put about half the kills inside the import; none at all means the
    # calibration is off and the test proves little.
    assert int(summary.group(1)) >= 1
