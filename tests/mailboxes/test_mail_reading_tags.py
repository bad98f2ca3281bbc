"""The mail list rows (mailboxes.templatetags.mail_reading): values worked out once per page
give what the per-row ``{% url %}``, ``date`` and ``truncatechars`` gave."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime
from typing import Any

import pytest
from django.template import Context, Template
from django.template.defaultfilters import date as date_filter
from django.template.defaultfilters import truncatechars
from django.urls import reverse
from django.utils import timezone, translation

from mailboxes.models import AddressRole, Direction
from mailboxes.selectors import folder_messages, message_rows
from mailboxes.templatetags.mail_reading import (
    SNIPPET_DISPLAY_CHARS,
    _snippet,
    message_list_rows,
)
from tests.conftest import Team
from tests.mailboxes.factories import MailboxFactory, MessageFactory
from tests.records.factories import CandidateFactory, ClientFactory

pytestmark = pytest.mark.django_db


def _rows(team: Team, viewer: Any, folder: str) -> list[Any]:
    messages = message_rows(folder_messages(user=viewer, folder=folder, mailbox=None), user=viewer)
    return message_list_rows(messages, viewer_id=viewer.pk)


@pytest.mark.parametrize(("language", "zone"), [("en", "UTC"), ("ja", "Asia/Tokyo")])
def test_rows_give_the_links_dates_and_texts_of_the_template_filters(
    team: Team, language: str, zone: str
) -> None:
    mailbox = MailboxFactory(owner=team.owner)
    candidate = CandidateFactory(organization=team.organization, owner=team.owner)
    company = ClientFactory(organization=team.organization, owner=team.owner)
    at = datetime(2026, 1, 10, 15, 30, 12, 345000, tzinfo=UTC)
    long_snippet = "面接" * 100
    message = MessageFactory(
        owner=team.owner,
        mailbox=mailbox,
        sort_at=at,
        snippet=long_snippet,
        has_attachments=True,
        records=[candidate, company],
    )
    with translation.override(language), timezone.override(zoneinfo.ZoneInfo(zone)):
        [row] = _rows(team, team.owner, "inbox")
        assert row["url"] == reverse("mail:message", args=[message.pk])
        assert row["when_iso"] == date_filter(timezone.localtime(at), "c")
        assert row["when"] == date_filter(timezone.localtime(at), "SHORT_DATETIME_FORMAT")
        assert row["snippet"] == truncatechars(long_snippet, 140)
        assert row["unread"] and row["has_attachments"] and row["owner"] is None
        assert row["who"] == "Taro Yamada" and not row["outgoing"]
        chips = {chip["url"]: chip for chip in row["chips"]}
        assert set(chips) == {candidate.get_absolute_url(), company.get_absolute_url()}
        assert chips[candidate.get_absolute_url()]["label"] == str(candidate.get_kind_display())
        assert chips[company.get_absolute_url()]["name"] == company.display_name


def test_sent_rows_name_the_first_recipient_and_others_mail_its_owner(team: Team) -> None:
    mailbox = MailboxFactory(owner=team.owner)
    MessageFactory(
        owner=team.owner,
        mailbox=mailbox,
        direction=Direction.OUTGOING,
        is_read=False,
        addresses=[(AddressRole.TO, "hana@client.example"), (AddressRole.TO, "b@x.example")],
    )
    [row] = _rows(team, team.owner, "sent")
    assert row["outgoing"] and row["who"] == "hana@client.example"
    assert row["owner"] is None
    [row] = message_list_rows(
        message_rows(
            folder_messages(user=team.owner, folder="sent", mailbox=None), user=team.owner
        ),
        viewer_id=team.teammate.pk,
    )
    assert row["owner"] == team.owner and not row["unread"]  # unread marks are the owner's


def test_rows_template_escapes_what_mail_senders_wrote(team: Team) -> None:
    mailbox = MailboxFactory(owner=team.owner)
    MessageFactory(
        owner=team.owner,
        mailbox=mailbox,
        from_name="<script>alert(1)</script>",
        subject="<b>Hi</b>",
        snippet="<img src=x>",
    )
    messages = message_rows(
        folder_messages(user=team.owner, folder="inbox", mailbox=None), user=team.owner
    )
    html = Template("{% load mail_reading %}{% message_rows messages %}").render(
        Context({"messages": messages, "user": team.owner})
    )
    assert "<script>" not in html and "<b>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;b&gt;Hi&lt;/b&gt;" in html
    assert 'class="message-row unread"' in html


@pytest.mark.parametrize(
    "text",
    ["", "Hello there.", "x" * 140, "x" * 141, "e\u0301" * 100, "Cafe\u0301 " * 5, "面接" * 70],
)
def test_snippets_are_cut_as_truncatechars_cuts_them(text: str) -> None:
    assert _snippet(text) == truncatechars(text, SNIPPET_DISPLAY_CHARS)
