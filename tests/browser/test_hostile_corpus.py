"""The hostile mail corpus end to end: delivered to Dovecot, imported by a real poll, and every
message page opened in Chromium, where nothing may run and nothing may load from elsewhere.

The corpus (``tests/mailboxes/eml/hostile/``, its README lists the cases) calls its attacker
``http://beacon.invalid``; here that becomes a loopback server that records every request. A
script that ran would change the page title, set ``window.PWNED``, open a dialog or call the
beacon. Every other request that is not for the hub's own origin is caught by a route before it
reaches the network (no name is ever resolved) and fails the test too.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import re
import threading
import unicodedata
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from playwright.sync_api import BrowserContext, Dialog, Page, Route

from mailboxes.importer import mailbox_poll
from mailboxes.models import ImportState, Message, PollOutcome
from tests.browser.conftest import sign_in
from tests.conftest import Team
from tests.mailboxes.conftest import mailbox_for
from tests.mailboxes.test_importer_hostile import as_retrieved
from tests.peers.fixtures import Pop3Account

pytestmark = pytest.mark.django_db(transaction=True)

CORPUS = Path(__file__).resolve().parents[1] / "mailboxes" / "eml" / "hostile"
BEACON_HOST = b"beacon.invalid"
# Judged independently of mailboxes.downloads, so a gap there cannot hide here.
WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"} | {
    f"{device}{digit}" for device in ("COM", "LPT") for digit in "0123456789¹²³"
}
INVISIBLE = {"Cc", "Cf", "Zl", "Zp", "Cs"}


class Beacon(http.server.ThreadingHTTPServer):
    """The attacker's server, on loopback: records every request, whatever its method."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        beacon = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self) -> None:
                beacon.requests.append(f"{self.command} {self.path}")
                self.send_response(204)
                self.end_headers()

            do_GET = do_POST = do_HEAD = do_OPTIONS = do_PUT = _record  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def host(self) -> bytes:
        return f"127.0.0.1:{self.server_address[1]}".encode()


@pytest.fixture
def beacon() -> Iterator[Beacon]:
    server = Beacon()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def assert_safe_download_name(disposition: str, where: str) -> None:
    """``Content-Disposition: attachment`` whose names (ASCII and UTF-8) are harmless."""
    assert disposition.startswith("attachment;"), where
    ascii_name = re.search(r'filename="([^"]*)"', disposition)
    utf8_name = re.search(r"filename\*=UTF-8''([^;\s]+)", disposition)
    assert ascii_name and utf8_name, f"{where}: {disposition!r}"
    assert ascii_name[1].isascii(), where
    for name in (ascii_name[1], unquote(utf8_name[1], errors="strict")):
        folded = unicodedata.normalize("NFKC", name)
        assert name and 0 < len(name.encode()) <= 200, f"{where}: {name!r}"
        assert not re.search(r"[/\\:*?\"<>|]", folded), f"{where}: path or forbidden in {name!r}"
        assert not any(unicodedata.category(ch) in INVISIBLE for ch in name), f"{where}: {name!r}"
        assert not name.startswith(".") and not name.endswith((".", " ")), f"{where}: {name!r}"
        stem = folded.split(".", 1)[0].strip().upper()
        assert stem not in WINDOWS_DEVICES, f"{where}: device name {name!r}"


_connections = threading.local()


def download(origin: str, path: str, cookie: str) -> tuple[int, dict[str, str]]:
    """GET ``path`` with the browser's session cookie; the status and headers (body read)."""
    connection = getattr(_connections, "connection", None)
    if connection is None:
        parts = urlsplit(origin)
        connection = _connections.connection = http.client.HTTPConnection(
            parts.hostname or "localhost", parts.port, timeout=30
        )
    connection.request("GET", path, headers={"Cookie": cookie})
    response = connection.getresponse()
    response.read()
    headers = dict(response.getheaders())
    if response.getheader("Connection", "").lower() == "close":
        connection.close()
        _connections.connection = None
    return response.status, headers


def test_every_hostile_message_imports_and_its_page_runs_and_fetches_nothing(
    browser_context: BrowserContext,
    page: Page,
    live_server,  # type: ignore[no-untyped-def]
    team: Team,
    password: str,
    pop3_account: Pop3Account,
    mail_settings,  # type: ignore[no-untyped-def]
    beacon: Beacon,
) -> None:
    files = sorted(CORPUS.glob("*.eml"))
    assert len(files) >= 50
    mailbox = mailbox_for(pop3_account, team.owner, email_address="owner@sakura.example")
    for path in files:
        pop3_account.deliver(path.read_bytes().replace(BEACON_HOST, beacon.host))

    report = mailbox_poll(mailbox_id=mailbox.pk)
    assert report is not None
    assert (report.outcome, report.failed, report.too_large) == (PollOutcome.OK, 0, 0), (
        report.error_message
    )
    assert (report.on_server, report.new, report.imported) == (len(files),) * 3
    messages = list(Message.objects.filter(mailbox=mailbox).order_by("pk"))
    assert len(messages) == len(files), "a message was dropped or merged"
    # Each message as Dovecot handed it out, byte for byte.
    assert {message.raw_sha256 for message in messages} == {
        hashlib.sha256(as_retrieved(copy)).hexdigest() for copy in pop3_account.messages()
    }
    assert {message.import_state for message in messages} <= {
        ImportState.PARSED,
        ImportState.UNPARSED,
    }

    origin = live_server.url
    offsite: list[str] = []
    requests: list[str] = []
    dialogs: list[str] = []
    console: list[str] = []
    popups: list[str] = []

    def hold_offsite(route: Route) -> None:
        """Requests for the hub go on; anything else is recorded and never reaches a network."""
        if route.request.url.startswith(origin + "/"):
            route.continue_()
        else:
            offsite.append(route.request.url)
            route.abort()

    browser_context.route("**/*", hold_offsite)
    browser_context.on("request", lambda request: requests.append(request.url))
    browser_context.on("page", lambda other: popups.append(other.url))

    def refuse_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", refuse_dialog)
    page.on("console", lambda message: console.append(message.text))
    sign_in(page, origin, team.owner.email, password)

    attachment_links: list[tuple[str, str]] = []
    shown_names: list[tuple[str, str]] = []
    for message in messages:
        where = f"message {message.pk} ({message.subject[:40]!r})"
        response = page.goto(f"{origin}/mail/messages/{message.pk}/", wait_until="load")
        assert response is not None and response.status == 200, where
        page.wait_for_timeout(100)  # a meta refresh or timer that survived would fire now
        assert "PWNED" not in page.title(), where
        assert page.evaluate("() => typeof window.PWNED") == "undefined", where
        for frame in page.frames[1:]:
            assert "PWNED" not in frame.evaluate("() => document.title"), where

        names = page.locator("table.attachments a").all_text_contents()
        shown_names += [(where, name) for name in names]
        hrefs = page.locator("table.attachments a").evaluate_all(
            "links => links.map(link => link.getAttribute('href'))"
        )
        attachment_links += [(where, href) for href in hrefs]

        frame_src = (
            page.locator("iframe.mailframe").get_attribute("src")
            if page.locator("iframe.mailframe").count()
            else None
        )
        if frame_src:
            # The frame document opened on its own, outside the sandboxed iframe.
            page.goto(origin + frame_src, wait_until="load")
            page.wait_for_timeout(50)
            assert "PWNED" not in page.title(), where
            assert page.evaluate("() => typeof window.PWNED") == "undefined", where

    page.wait_for_timeout(1500)  # anything delayed (a refresh after 1 s) has had its chance
    # Every attachment of every message, the 1,000-part one included: over HTTP with the
    # browser's session, four at a time (one by one through the browser takes a minute).
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in browser_context.cookies(origin))
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda link: download(origin, link[1], cookie), attachment_links))
        originals = list(
            pool.map(
                lambda message: download(origin, f"/mail/messages/{message.pk}/original/", cookie),
                messages,
            )
        )
    assert len(answers) > 1000
    for (where, href), (status, headers) in zip(attachment_links, answers, strict=True):
        assert status == 200, (where, href)
        assert headers.get("X-Content-Type-Options") == "nosniff", (where, href)
        assert_safe_download_name(headers.get("Content-Disposition", ""), f"{where} {href}")
    # "View original": the raw message as plain text that no browser renders as a page.
    for message, (status, headers) in zip(messages, originals, strict=True):
        assert status == 200, message.pk
        assert headers.get("Content-Type") == "text/plain; charset=utf-8", message.pk
        assert headers.get("X-Content-Type-Options") == "nosniff", message.pk
        assert "sandbox" in headers.get("Content-Security-Policy", ""), message.pk
    assert beacon.requests == []
    assert offsite == [], offsite
    assert [url for url in requests if urlsplit(url).netloc != urlsplit(origin).netloc] == []
    assert dialogs == [] and popups == []
    assert not [text for text in console if "PWNED" in text]
    assert [
        (where, name)
        for where, name in shown_names
        if any(unicodedata.category(ch) in INVISIBLE for ch in name)
    ] == []

    # "Show images" on the message that hides remote images every way: the <img> sources the
    # sanitiser kept load (held by the route), and nothing else (srcset, <source>,
    # backgrounds, <input type=image>, SVG <image>) comes back to life.
    remote = next(message for message in messages if message.subject.startswith("[H46]"))
    page.goto(f"{origin}/mail/messages/{remote.pk}/")
    page.click("text=Show images")
    page.wait_for_timeout(1000)
    loaded = {urlsplit(url).path for url in offsite} | {
        request.split(" ")[1] for request in beacon.requests
    }
    assert "/pixel.gif" in loaded
    assert loaded <= {"/pixel.gif", "/upper.gif", "/picture.gif", "/https-tracker.gif"}, loaded
