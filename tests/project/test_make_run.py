"""`make run` as a new user meets it: it serves the app with a worker and a scheduler (whose
tick the worker runs), prints a login that works, lets the admin create a candidate and add a
Gmail-style mailbox, and one Ctrl-C stops everything."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Browser:
    """A tiny cookie-keeping client that submits Django forms with their CSRF token."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path: str) -> tuple[str, str]:
        with self.opener.open(self.base + path, timeout=10) as response:
            return response.geturl(), response.read().decode()

    def post(self, path: str, data: dict[str, str]) -> tuple[str, str]:
        _, page = self.get(path)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, page[:500]
        body = urllib.parse.urlencode({**data, "csrfmiddlewaretoken": token.group(1)}).encode()
        request = urllib.request.Request(
            self.base + path, data=body, headers={"Referer": self.base + path}
        )
        with self.opener.open(request, timeout=20) as response:
            return response.geturl(), response.read().decode()


def test_make_run_serves_the_app_and_one_ctrl_c_stops_it(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    }
    env.update(RECRUITMAIL_DATA_DIR=str(tmp_path / "data"), RECRUITMAIL_PORT=str(port))
    log_path = tmp_path / "make-run.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            output = log_path.read_text()
            ready = "scheduler" in output and "worker" in output and "celery@" in output
            if ready and "Quit the server" in output or "Starting development server" in output:
                try:
                    urllib.request.urlopen(base + "/accounts/login/", timeout=2)
                    break
                except OSError:
                    pass
            assert process.poll() is None, output[-3000:]
            assert time.monotonic() < deadline, output[-3000:]
            time.sleep(0.5)
        login = re.search(r"admin:\s+(\S+)\s+/\s+(\S+)", output)
        assert login, output[-3000:]
        browser = Browser(base)
        url, page = browser.post(
            "/accounts/login/", {"username": login.group(1), "password": login.group(2)}
        )
        assert "Sign out" in page, page[:1000]
        url, page = browser.post(
            "/candidates/new/",
            {
                "first_name": "花子",
                "last_name": "佐藤",
                "owner": re.search(
                    r'<option value="(\d+)" selected', browser.get("/candidates/new/")[1]
                ).group(1),
                "addresses": "Hanako.Sato@Example.jp",
            },
        )
        assert "佐藤" in page and "hanako.sato@example.jp" in page
        url, page = browser.post(
            "/mail/accounts/new/",
            {
                "name": "Gmail",
                "email_address": "aiko.admin@gmail.com",
                "pop3_host": "pop.gmail.com",
                "pop3_port": "995",
                "pop3_security": "ssl",
                "pop3_username": "recent:aiko.admin@gmail.com",
                "pop3_password": "app-password-1234",
                "smtp_same_credentials": "on",
                "smtp_security": "ssl",
                "deletion_policy": "keep",
                "first_import_scope": "all",
                "make_active": "on",
            },
        )
        assert "smtp.gmail.com" in page and "app-password-1234" not in page, page[:2000]
        # The worker and the scheduler are up beside the web app.
        output = log_path.read_text()
        assert re.search(r"worker\.\d+\s+\|.*ready", output), output[-3000:]
        assert re.search(r"scheduler\.\d+\s+\|.*beat: Starting", output), output[-3000:]
        # Beat's tick reaches the worker through the scheduler's own queue on the filesystem
        # broker (declared there too): the task that enqueues the due polls runs.
        ran_tick = re.compile(
            r"worker\.\d+\s+\|.*Task mailboxes\.enqueue_due_polls\[\S+\] succeeded"
        )
        deadline = time.monotonic() + 60
        while not ran_tick.search(output := log_path.read_text()):
            assert time.monotonic() < deadline, output[-3000:]
            time.sleep(0.5)
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's process group
        try:
            process.wait(timeout=30)
        finally:
            leftover = subprocess.run(
                ["pgrep", "-g", str(process.pid)], capture_output=True, text=True
            ).stdout
            if process.poll() is None or leftover.strip():
                os.killpg(process.pid, signal.SIGKILL)
    assert not leftover.strip(), f"processes left after Ctrl-C: {leftover}"
