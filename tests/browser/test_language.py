"""A recruiter switches RecruitMail to Japanese and Tokyo time on the profile page, in Chromium."""

from __future__ import annotations

import datetime as dt

import pytest
from playwright.sync_api import Page, expect

from mailboxes.models import Mailbox, Message, PollOutcome, PollReport
from tests.browser.conftest import sign_in
from tests.conftest import Team
from tests.mailboxes.factories import MailboxFactory, MessageFactory

pytestmark = pytest.mark.django_db(transaction=True)

# 2025-01-10 00:30 UTC is 09:30 on the same day in Tokyo.
KNOWN_MOMENT = dt.datetime(2025, 1, 10, 0, 30, tzinfo=dt.UTC)


def test_profile_switches_to_japanese_and_tokyo_time(
    page: Page,
    live_server,  # type: ignore[no-untyped-def]
    team: Team,
    password: str,
) -> None:
    mailbox: Mailbox = MailboxFactory(owner=team.owner, name="Work")
    PollReport.objects.create(
        mailbox=mailbox,
        started_at=KNOWN_MOMENT,
        finished_at=KNOWN_MOMENT,
        outcome=PollOutcome.OK,
        new=2,
        imported=2,
    )
    message: Message = MessageFactory(owner=team.owner, mailbox=mailbox, sort_at=KNOWN_MOMENT)
    mailbox_url = f"{live_server.url}/mail/accounts/{mailbox.pk}/"
    message_url = f"{live_server.url}/mail/messages/{message.pk}/"

    # The browser asks for English and the user has chosen nothing: English, in UTC.
    sign_in(page, live_server.url, team.owner.email, password)
    expect(page.locator("nav.mainnav")).to_contain_text("Inbox")
    page.goto(message_url)
    expect(page.locator(".message-head time")).to_have_text("Jan. 10, 2025, 12:30 a.m. (UTC)")

    page.goto(f"{live_server.url}/accounts/profile/")
    page.select_option("#id_language", "ja")
    page.fill("#id_time_zone", "Asia/Tokyo")
    page.click("button.primary")

    expect(page.locator(".flash-success")).to_have_text("設定を保存しました。")
    expect(page.locator("html")).to_have_attribute("lang", "ja")
    nav = page.locator("nav.mainnav")
    for japanese in ("メール作成", "受信トレイ", "送信済み", "共有されたメール", "候補者"):
        expect(nav).to_contain_text(japanese)
    for english in ("Compose", "Inbox", "Sent", "Candidates", "Mail accounts"):
        expect(nav).not_to_contain_text(english)
    expect(page.locator(".usermenu")).to_contain_text("ログアウト")
    expect(page.locator("#id_language")).to_have_value("ja")

    # Dates in the user's time zone: the poll's start and the message's date, 09:30 JST.
    page.goto(mailbox_url)
    expect(page.locator("h1")).to_contain_text("Work")
    expect(page.get_by_role("button", name="今すぐ受信")).to_be_visible()
    expect(page.locator("table.compact tbody tr").first).to_contain_text("2025年1月10日9:30")
    page.goto(message_url)
    expect(page.locator(".message-head time")).to_have_text("2025年1月10日9:30 (JST)")
    expect(page.get_by_role("link", name="全員に返信")).to_be_visible()

    # Signing out and in again keeps the choice: it is stored on the user, not in the session.
    page.click("button:has-text('ログアウト')")
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", team.owner.email)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    expect(page.locator("nav.mainnav")).to_contain_text("受信トレイ")
