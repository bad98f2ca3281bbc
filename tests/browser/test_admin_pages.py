"""An admin locks and unlocks a member's mail settings from the members' table, in Chromium:
every row's buttons submit the page's one lock form (one CSRF token) to their member's URL."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from sharing.models import MailboxSharing
from tests.browser.conftest import sign_in
from tests.conftest import Team
from tests.mailboxes.factories import MailboxFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_admin_locks_and_unlocks_a_members_mail_settings(
    page: Page,
    live_server,  # type: ignore[no-untyped-def]
    team: Team,
    password: str,
) -> None:
    mailbox = MailboxFactory(owner=team.owner, name="Work")
    teammates = MailboxFactory(owner=team.teammate, name="Desk")
    sign_in(page, live_server.url, team.admin.email, password)
    page.goto(f"{live_server.url}/admin/mail/")
    row = page.locator("tr", has_text=team.owner.email)

    row.get_by_role("button", name="Lock", exact=True).click()
    expect(page.locator(".flash-success")).to_have_text(
        f"Mail settings of {team.owner.full_name} locked."
    )
    owner_row = page.locator("tr", has_text=team.owner.email)
    expect(owner_row).to_contain_text("Private (only me) 🔒")
    assert MailboxSharing.objects.get(mailbox=mailbox).locked
    assert not MailboxSharing.objects.get(mailbox=teammates).locked  # only that member's

    owner_row.get_by_role("button", name="Unlock").click()
    expect(page.locator(".flash-success")).to_have_text(
        f"Mail settings of {team.owner.full_name} unlocked."
    )
    expect(owner_row).not_to_contain_text("🔒")
    assert not MailboxSharing.objects.get(mailbox=mailbox).locked
