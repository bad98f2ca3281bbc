"""The "who can see this" panel on a message page, computed from the visibility rule."""

from __future__ import annotations

import pytest
from django.urls import reverse

from mailboxes.models import AddressRole, MessageOrigin
from sharing.models import MailboxSharing, Permission
from tests.conftest import Team
from tests.mailboxes.factories import MailboxFactory, MessageFactory
from tests.records.factories import CandidateFactory

pytestmark = pytest.mark.django_db


def panel(team: Team, message) -> str:  # type: ignore[no-untyped-def]
    page = (
        team.client_for(team.owner).get(reverse("mail:message", args=[message.pk])).content.decode()
    )
    return page.split('id="who-can-see"', 1)[1].split("</section>", 1)[0]


@pytest.mark.parametrize(
    ("permission", "linked", "shared", "sender", "who", "why"),
    [
        (
            Permission.PRIVATE,
            True,
            False,
            "taro@example.jp",
            "you, who owns it.",
            "The mailbox is Private",
        ),
        (
            Permission.ADMIN,
            True,
            False,
            "taro@example.jp",
            "the organisation&#x27;s admins (1)",
            "with admins",
        ),
        (
            Permission.PUBLIC,
            True,
            False,
            "taro@example.jp",
            "everyone in the organisation (2 more people)",
            "with everyone",
        ),
        (
            Permission.PUBLIC,
            True,
            False,
            "x@hr.secret.example",
            "you, who owns it.",
            "excluded domains",
        ),
        (
            Permission.CUSTOM,
            True,
            True,
            "taro@example.jp",
            "everyone in the organisation",
            "“share emails” box is ticked",
        ),
        (
            Permission.CUSTOM,
            True,
            False,
            "taro@example.jp",
            "you, who owns it.",
            "None of its records",
        ),
        (
            Permission.PUBLIC,
            False,
            False,
            "taro@example.jp",
            "you, who owns it.",
            "concerns no record",
        ),
    ],
)
def test_panel_says_who_and_why(team: Team, permission, linked, shared, sender, who, why) -> None:  # type: ignore[no-untyped-def]
    mailbox = MailboxFactory(owner=team.owner, email_address="owner@sakura.example")
    MailboxSharing.objects.filter(mailbox=mailbox).update(permission=permission)
    mailbox.sharing.excluded_domains.create(domain="secret.example")
    candidate = CandidateFactory(
        organization=team.organization, owner=team.owner, share_emails=shared
    )
    message = MessageFactory(
        owner=team.owner,
        mailbox=mailbox,
        addresses=[(AddressRole.FROM, sender), (AddressRole.TO, "owner@sakura.example")],
        records=[candidate] if linked else [],
    )
    text = panel(team, message)
    assert who in text and why in text


def test_hub_mail_follows_its_records(team: Team) -> None:
    mailbox = MailboxFactory(owner=team.owner)
    candidate = CandidateFactory(organization=team.organization, owner=team.owner)
    message = MessageFactory(
        owner=team.owner, mailbox=mailbox, origin=MessageOrigin.HUB, records=[candidate]
    )
    text = panel(team, message)
    assert "everyone in the organisation" in text and "follows the visibility" in text
