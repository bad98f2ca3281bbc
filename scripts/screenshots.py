"""Refresh docs/screenshots/: the main pages of a fresh demo, in headless Chromium.

Run by `make screenshots`. It sets up the demo (demo_setup, demo_mail) in a temporary data
folder, serves it on a free loopback port and photographs the pages the README shows.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data:
        env = {
            k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")
        }
        env.update(DEBUG="true", RECRUITMAIL_DATA_DIR=data)
        manage = [sys.executable, "manage.py"]
        for command in (["migrate", "-v0"], ["demo_setup"], ["demo_mail"]):
            subprocess.run(manage + command, cwd=ROOT, env=env, check=True, capture_output=True)
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            manage + ["runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(base + "/accounts/login/", timeout=1)  # noqa: S310 - loopback
                    break
                except OSError:
                    time.sleep(0.2)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 860}, locale="en-US")
                page.goto(base + "/accounts/login/")
                page.fill("#id_username", "recruiter@demo.recruitmail.test")
                page.fill("#id_password", "recruitmail-demo")
                page.click("button[type=submit]")
                page.wait_for_selector("text=Sign out")
                shots = {"inbox": "/mail/inbox/"}
                page.goto(base + "/candidates/")
                page.click("text=山田 太郎")
                shots["record"] = page.url.removeprefix(base)
                page.goto(base + "/mail/accounts/")
                page.click("table.list a")
                shots["mail-settings"] = page.url.removeprefix(base)
                shots["sharing"] = shots["mail-settings"] + "sharing/"
                for name, path in shots.items():
                    page.goto(base + path)
                    page.wait_for_load_state("networkidle")
                    page.screenshot(path=str(OUT / f"{name}.png"), full_page=False)
                    print(f"docs/screenshots/{name}.png  <- {path}")
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
