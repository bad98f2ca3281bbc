"""The strict Content-Security-Policy in Chromium: the main pages, their scripts and the mail
frame work under it, and the browser reports no violation anywhere."""

from __future__ import annotations

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from mailboxes.html import sanitize_html
from tests.browser.conftest import sign_in
from tests.conftest import Team
from tests.mailboxes.factories import MailboxFactory, MessageFactory
from tests.records.factories import CandidateFactory

pytestmark = pytest.mark.django_db(transaction=True)

# Playwright's init scripts are not subject to the page's policy: this one records every
# violation the browser reports, in the page and in the mail frame.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__cspViolations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


def _violations(page: Page) -> list[str]:
    # The page's own record; the sandboxed mail frame runs no script, so its violations, if
    # any, show in the console (checked at the end).
    return page.evaluate("() => window.__cspViolations || []")


def test_pages_scripts_and_mail_frame_work_under_the_policy(
    live_server, browser_context: BrowserContext, team: Team, password: str
) -> None:  # type: ignore[no-untyped-def]
    browser_context.add_init_script(RECORD_VIOLATIONS)
    console: list[str] = []
    page = browser_context.new_page()
    page.on("console", lambda message: console.append(message.text))

    mailbox = MailboxFactory(owner=team.owner, email_address="owner@sakura.example")
    candidate = CandidateFactory(
        organization=team.organization, owner=team.owner, addresses=["taro@cand.example"]
    )
    stored = sanitize_html('<p style="color: #b00">Hello <b>from the frame</b></p>')
    message = MessageFactory(
        owner=team.owner, mailbox=mailbox, body_html=stored.html, records=[candidate]
    )

    page.goto(f"{live_server.url}/accounts/login/")
    assert _violations(page) == []
    sign_in(page, live_server.url, team.owner.email, password)

    for path in (
        "/mail/inbox/",
        f"/candidates/{candidate.pk}/",
        f"/mail/accounts/{mailbox.pk}/",
        "/mail/compose/",
    ):
        response = page.goto(live_server.url + path)
        assert response is not None and response.status == 200, path
        assert _violations(page) == [], path

    # The message page: the mail frame renders (its own policy allows its inline style).
    page.goto(f"{live_server.url}/mail/messages/{message.pk}/")
    frame = page.frame_locator("iframe.mailframe")
    expect(frame.locator("b")).to_have_text("from the frame")
    assert _violations(page) == []

    # The mailbox form's script runs: a Gmail address fills in Gmail's servers.
    page.goto(f"{live_server.url}/mail/accounts/new/")
    page.fill("input[name=email_address]", "someone@gmail.com")
    page.dispatch_event("input[name=email_address]", "change")
    expect(page.locator("input[name=pop3_host]")).to_have_value("pop.gmail.com")
    assert _violations(page) == []

    assert not [text for text in console if "Content Security Policy" in text], console
