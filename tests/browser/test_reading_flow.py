"""Reading and answering mail in Chromium: Japanese text exact on a candidate's page, hostile HTML
that runs nothing and fetches nothing until "show images", a reply the SMTP server receives
threaded, and a colleague who sees exactly what the sharing permission allows."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from mailboxes.importer import mailbox_poll
from mailboxes.models import Mailbox, Message
from sharing.models import MailboxSharing, Permission
from tests.browser.conftest import sign_in
from tests.conftest import Team
from tests.mailboxes.conftest import mailbox_for
from tests.mailboxes.mail import make_message
from tests.mailboxes.test_sending import use_smtp
from tests.peers.fixtures import Pop3Account
from tests.peers.smtp import SmtpServer
from tests.records.factories import CandidateFactory

pytestmark = pytest.mark.django_db(transaction=True)
EML = Path(__file__).resolve().parents[1] / "mailboxes" / "eml"


class RecordingServer(http.server.ThreadingHTTPServer):
    """A loopback HTTP server that records every request path (the "remote image host")."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                recorder.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.end_headers()
                self.wfile.write(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def image_host() -> Iterator[RecordingServer]:
    server = RecordingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def polled(team: Team, pop3_account: Pop3Account, mail_settings) -> Mailbox:  # type: ignore[no-untyped-def]
    return mailbox_for(pop3_account, team.owner, email_address="taro.yamada@example.jp")


def poll(mailbox: Mailbox) -> None:
    report = mailbox_poll(mailbox_id=mailbox.pk)
    assert report is not None and report.imported >= 1, report and report.error_message


def test_iso2022jp_with_vendor_characters_reads_exactly_on_the_candidates_page(
    page: Page,
    live_server,
    team: Team,
    password: str,
    pop3_account: Pop3Account,
    polled: Mailbox,  # type: ignore[no-untyped-def]
) -> None:
    candidate = CandidateFactory(
        organization=team.organization,
        owner=team.owner,
        first_name="太郎",
        last_name="山田",
        addresses=["recruit@example.co.jp"],
    )
    pop3_account.deliver((EML / "iso2022jp_outlook_vendor.eml").read_bytes())
    poll(polled)
    sign_in(page, live_server.url, team.owner.email, password)
    page.goto(live_server.url + candidate.get_absolute_url())
    page.click("text=【①㈱～Ⅲ】面接日程")
    expect(page.locator("h1.subject")).to_have_text("【①㈱～Ⅲ】面接日程")
    body = page.locator(".message-text, pre").first
    expect(body).to_contain_text("①㈱～Ⅲのご確認をお願いします。")
    expect(body).to_contain_text("髙橋（IBM拡張）、ｶﾀｶﾅ")
    assert "\ufffd" not in page.content()


def test_hostile_html_runs_nothing_and_fetches_nothing_until_show_images(
    page: Page,
    live_server,
    team: Team,
    password: str,
    pop3_account: Pop3Account,
    polled: Mailbox,  # type: ignore[no-untyped-def]
    image_host: RecordingServer,
) -> None:
    html = (
        f'<p id="greeting">Hello from Acme</p>'
        f"<script>document.title='pwned';fetch('{image_host.base}/script')</script>"
        f'<img src="{image_host.base}/pixel.gif" onerror="fetch(\'{image_host.base}/onerror\')" alt="logo">'
        f"<a href=\"javascript:fetch('{image_host.base}/js-link')\">click</a>"
        f'<form action="{image_host.base}/form"><input name="q"></form>'
        f'<iframe src="{image_host.base}/iframe"></iframe>'
        f'<meta http-equiv="refresh" content="0;url={image_host.base}/refresh">'
    )
    raw = (
        "From: Acme <hr@acme.example>\r\nTo: taro.yamada@example.jp\r\nSubject: Hostile HTML\r\n"
        "Message-ID: <hostile@acme.example>\r\nDate: Mon, 01 Jul 2024 10:00:00 +0900\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/html; charset=utf-8\r\n\r\n" + html + "\r\n"
    ).encode()
    pop3_account.deliver(raw)
    poll(polled)
    message = Message.objects.get(subject="Hostile HTML")
    sign_in(page, live_server.url, team.owner.email, password)
    page.goto(f"{live_server.url}/mail/messages/{message.pk}/")
    frame = page.frame_locator("iframe.mailframe")
    expect(frame.locator("text=Hello from Acme")).to_be_visible()
    page.wait_for_timeout(1500)
    assert image_host.paths == []
    assert page.title() != "pwned"
    page.click("text=Show images")
    expect(page.frame_locator("iframe.mailframe").locator("img[alt=logo]")).to_be_visible()
    page.wait_for_timeout(1000)
    assert image_host.paths == ["/pixel.gif"]  # the image only: no script, handler, link or refresh


def test_reply_reaches_the_smtp_server_threaded(
    page: Page,
    live_server,
    team: Team,
    password: str,
    pop3_account: Pop3Account,
    polled: Mailbox,  # type: ignore[no-untyped-def]
    smtp_server: SmtpServer,
    send_settings,  # type: ignore[no-untyped-def]
) -> None:
    CandidateFactory(
        organization=team.organization, owner=team.owner, addresses=["taro@example.jp"]
    )
    use_smtp(polled, smtp_server, send_settings)
    send_settings.MAIL_CA_FILE = str(smtp_server.ca_file)
    polled.save()
    pop3_account.deliver(
        make_message(
            subject="Interview slot", message_id="<slot@example.jp>", to="taro.yamada@example.jp"
        )
    )
    poll(polled)
    message = Message.objects.get(subject="Interview slot")
    sign_in(page, live_server.url, team.owner.email, password)
    page.goto(f"{live_server.url}/mail/messages/{message.pk}/")
    page.click("a:has-text('Reply')")
    expect(page.locator("#audience")).to_contain_text("visible to everyone who can see")
    page.fill("#id_body", "Thursday at 14:00 works for me.")
    page.click("button:has-text('Send')")
    expect(page.locator(".flash-success")).to_contain_text("Sent")
    (received,) = smtp_server.messages
    headers = message_from_bytes(received.raw)
    assert headers["In-Reply-To"] == "<slot@example.jp>"
    assert headers["References"] == "<slot@example.jp>"
    assert headers["Subject"] == "Re: Interview slot"


def test_a_colleague_sees_exactly_what_the_permission_allows(
    browser_context: BrowserContext,
    live_server,
    team: Team,
    password: str,
    pop3_account: Pop3Account,  # type: ignore[no-untyped-def]
    polled: Mailbox,
) -> None:
    CandidateFactory(
        organization=team.organization,
        owner=team.owner,
        addresses=["taro@example.jp", "jiro@secret-client.example"],
    )
    pop3_account.deliver(
        make_message(
            subject="Shared interview", sender="taro@example.jp", to="taro.yamada@example.jp"
        )
    )
    pop3_account.deliver(
        make_message(
            subject="Excluded client",
            sender="jiro@hr.secret-client.example",
            to="taro.yamada@example.jp",
        )
    )
    pop3_account.deliver(
        make_message(
            subject="Private note", sender="friend@elsewhere.example", to="taro.yamada@example.jp"
        )
    )
    poll(polled)
    MailboxSharing.objects.filter(mailbox=polled).update(permission=Permission.PUBLIC)
    polled.sharing.excluded_domains.create(domain="secret-client.example")
    mate = browser_context.new_page()
    sign_in(mate, live_server.url, team.teammate.email, password)
    mate.goto(f"{live_server.url}/mail/shared/")
    expect(mate.locator("text=Shared interview")).to_be_visible()
    expect(mate.locator("text=Excluded client")).to_have_count(0)
    expect(mate.locator("text=Private note")).to_have_count(0)
    hidden = Message.objects.get(subject="Excluded client")
    assert mate.goto(f"{live_server.url}/mail/messages/{hidden.pk}/").status == 404
    MailboxSharing.objects.filter(mailbox=polled).update(permission=Permission.PRIVATE)
    mate.goto(f"{live_server.url}/mail/shared/")
    expect(mate.locator("text=Shared interview")).to_have_count(0)
