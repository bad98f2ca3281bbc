"""A recruiter's first day, in Chromium: sign in, add a POP3 mailbox (the Dovecot fixture), test
its connection, Fetch now and watch the progress (imported so far of how many)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from mailboxes.models import Mailbox, Message
from tests.browser.conftest import sign_in
from tests.conftest import Team
from tests.mailboxes.factories import MailboxFactory
from tests.mailboxes.mail import make_message
from tests.peers.fixtures import Pop3Account

pytestmark = pytest.mark.django_db(transaction=True)


def test_add_mailbox_and_test_its_connection(
    page: Page,
    live_server,
    team: Team,
    password: str,
    pop3_account: Pop3Account,
    mail_settings,  # type: ignore[no-untyped-def]
) -> None:
    sign_in(page, live_server.url, team.owner.email, password)
    page.click("text=Mail accounts")
    page.click("text=Add a POP3 mailbox")
    page.fill("#id_name", "Work")
    page.fill("#id_email_address", "owner@sakura.example")
    page.fill("#id_pop3_host", pop3_account.host)
    page.fill("#id_pop3_port", str(pop3_account.pop3s_port))
    page.check("input[name=pop3_security][value=ssl]")
    page.fill("#id_pop3_username", pop3_account.user)
    page.fill("#id_pop3_password", pop3_account.password)
    page.fill("#id_smtp_host", "127.0.0.1")
    page.fill("#id_smtp_port", "465")
    page.click("button:has-text('Add mailbox')")
    expect(page.locator(".flash-success")).to_contain_text("Mailbox Work added")
    assert Mailbox.objects.get(owner=team.owner).is_active
    assert pop3_account.password not in page.content()
    page.click("button:has-text('Test connection')")
    expect(page.locator(".flash-success")).to_be_visible()


def test_fetch_now_shows_live_progress(
    page: Page,
    live_server,
    team: Team,
    password: str,
    fault_pop3,
    mail_settings,
    celery_worker_process,  # type: ignore[no-untyped-def]
) -> None:
    for index in range(120):
        fault_pop3.add_message(make_message(subject=f"Application {index}"))
    # The server pauses before message 60, so the page can be seen mid-import.
    fault_pop3.faults.stall_at = "RETR 60"
    fault_pop3.faults.stall_seconds = 3
    mailbox = MailboxFactory(
        owner=team.owner,
        pop3_host=fault_pop3.host,
        pop3_port=fault_pop3.port,
        pop3_security="none",
        pop3_username=fault_pop3.username,
        password=fault_pop3.password,
    )
    sign_in(page, live_server.url, team.owner.email, password)
    page.goto(f"{live_server.url}/mail/accounts/{mailbox.pk}/")
    page.click("button:has-text('Fetch now')")
    progress = page.locator("#poll-progress")
    expect(progress).to_have_text(
        re.compile(r"Fetching: [1-9][0-9]* of 120 new messages imported"), timeout=20_000
    )
    expect(progress).to_have_text(
        re.compile(r"Last poll Completed: 120 of 120 new messages imported"), timeout=30_000
    )
    assert Message.objects.filter(mailbox=mailbox).count() == 120
