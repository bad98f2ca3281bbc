"""The rule is evaluated at query time: a changed permission, excluded domain, "share emails"
tick, link or membership applies on the next query, to old mail too. And two things hold
whatever the settings: another organisation's mail is never seen, and a deactivated user sees
nothing."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser

from mailboxes.models import AddressRole, Mailbox, Message, MessageLink, MessageOrigin
from records.models import Record, Role, User
from sharing.models import ExcludedDomain, Permission
from tests.conftest import Team
from tests.mailboxes.factories import MailboxFactory
from tests.records.factories import CandidateFactory, MembershipFactory
from tests.sharing.messages import sharing_set, stored_message

pytestmark = pytest.mark.django_db


def sees(user: User, message: Message) -> bool:
    """A fresh query each time, as a new page load makes (the user re-read from the database)."""
    user = User.objects.select_related("membership").get(pk=user.pk)
    return Message.objects.visible_to(user).filter(pk=message.pk).exists()


@pytest.fixture
def mailbox(team: Team) -> Mailbox:
    return MailboxFactory(owner=team.owner, email_address="owner@sakura.example")


@pytest.fixture
def record(team: Team) -> Record:
    return CandidateFactory(organization=team.organization, owner=team.owner, share_emails=False)


@pytest.fixture
def old_mail(team: Team, mailbox: Mailbox, record: Record) -> Message:
    """A message fetched over POP3 long before any of the changes below."""
    return stored_message(
        owner=team.owner,
        mailbox=mailbox,
        addresses=[
            (AddressRole.FROM, "ken@mail.tokyo.example"),
            (AddressRole.TO, "owner@sakura.example"),
        ],
        records=[record],
    )


def test_a_changed_permission_applies_to_old_mail_on_the_next_query(
    team: Team, mailbox: Mailbox, old_mail: Message
) -> None:
    # (permission, teammate sees, admin sees), one after the other on the same old message
    steps = [
        ("private", False, False),
        ("public", True, True),
        ("admin", False, True),
        ("custom", False, False),  # its record's "share emails" is not ticked
        ("public", True, True),
        ("private", False, False),
    ]
    seen = []
    for permission, _teammate, _admin in steps:
        sharing_set(mailbox, permission=permission)
        seen.append((permission, sees(team.teammate, old_mail), sees(team.admin, old_mail)))
    assert seen == steps
    assert sees(team.owner, old_mail)


def test_a_changed_excluded_domain_applies_on_the_next_query(
    team: Team, mailbox: Mailbox, old_mail: Message
) -> None:
    sharing = sharing_set(mailbox, permission=Permission.PUBLIC)
    assert sees(team.teammate, old_mail)
    excluded = ExcludedDomain.objects.create(sharing=sharing, domain="tokyo.example")
    assert not sees(team.teammate, old_mail)  # mail.tokyo.example is a subdomain
    excluded.domain = "mail.tokyo.example"
    excluded.save()
    assert not sees(team.teammate, old_mail)
    excluded.domain = "kyoto.example"
    excluded.save()
    assert sees(team.teammate, old_mail)
    ExcludedDomain.objects.create(sharing=sharing, domain="sakura.example")  # its own domain
    assert sees(team.teammate, old_mail)
    ExcludedDomain.objects.create(sharing=sharing, domain="mail.tokyo.example")
    assert not sees(team.teammate, old_mail)
    sharing.excluded_domains.all().delete()
    assert sees(team.teammate, old_mail)
    assert sees(team.owner, old_mail)


def test_ticking_share_emails_applies_on_the_next_query(
    team: Team, mailbox: Mailbox, record: Record, old_mail: Message
) -> None:
    sharing_set(mailbox, permission=Permission.CUSTOM)
    assert not sees(team.teammate, old_mail)
    Record.objects.filter(pk=record.pk).update(share_emails=True)
    assert sees(team.teammate, old_mail)
    assert sees(team.admin, old_mail)
    Record.objects.filter(pk=record.pk).update(share_emails=False)
    assert not sees(team.teammate, old_mail)


def test_a_link_made_later_shares_mail_that_was_the_owners_alone(
    team: Team, mailbox: Mailbox, record: Record
) -> None:
    sharing_set(mailbox, permission=Permission.PUBLIC)
    unlinked = stored_message(
        owner=team.owner, mailbox=mailbox, addresses=[(AddressRole.FROM, "ken@mail.example")]
    )
    assert not sees(team.teammate, unlinked)
    link = MessageLink.objects.create(message=unlinked, record=record)
    assert sees(team.teammate, unlinked)
    link.delete()
    assert not sees(team.teammate, unlinked)


def test_a_changed_role_applies_on_the_next_query(
    team: Team, mailbox: Mailbox, old_mail: Message
) -> None:
    sharing_set(mailbox, permission=Permission.ADMIN)
    assert not sees(team.teammate, old_mail)
    team.teammate.membership.role = Role.ADMIN
    team.teammate.membership.save()
    assert sees(team.teammate, old_mail)
    team.admin.membership.role = Role.RECRUITER
    team.admin.membership.save()
    assert not sees(team.admin, old_mail)


def test_another_organisations_mail_is_never_seen(team: Team, record: Record) -> None:
    """The outsider is an admin elsewhere; here everything is shared as widely as it can be."""
    mailbox = MailboxFactory(owner=team.owner, email_address="owner@sakura.example")
    sharing_set(mailbox, permission=Permission.PUBLIC)
    Record.objects.filter(pk=record.pk).update(share_emails=True)
    shared_pop3 = stored_message(owner=team.owner, mailbox=mailbox, records=[record])
    shared_hub = stored_message(
        owner=team.owner, mailbox=mailbox, origin=MessageOrigin.HUB, records=[record]
    )
    assert sees(team.teammate, shared_pop3) and sees(team.teammate, shared_hub)
    assert not sees(team.outsider, shared_pop3)
    assert not sees(team.outsider, shared_hub)
    for permission in Permission.values:
        sharing_set(mailbox, permission=permission)
        assert not Message.objects.visible_to(team.outsider).exists(), permission
    # And the other way round: the outsider's own mail stays in the outsider's organisation.
    abroad = MailboxFactory(owner=team.outsider)
    sharing_set(abroad, permission=Permission.PUBLIC)
    far = CandidateFactory(organization=team.other_organization, owner=team.outsider)
    outsiders_mail = stored_message(owner=team.outsider, mailbox=abroad, records=[far])
    assert sees(team.outsider, outsiders_mail)
    assert not any(sees(user, outsiders_mail) for user in (team.owner, team.teammate, team.admin))


def test_a_deactivated_user_sees_nothing_not_even_their_own_mail(
    team: Team, mailbox: Mailbox, old_mail: Message
) -> None:
    sharing_set(mailbox, permission=Permission.PUBLIC)
    hub_mail = stored_message(
        owner=team.owner, mailbox=mailbox, origin=MessageOrigin.HUB, records=old_mail.records.all()
    )
    for user in (team.teammate, team.admin, team.owner):
        assert sees(user, old_mail) and sees(user, hub_mail)
        User.objects.filter(pk=user.pk).update(is_active=False)
        fresh = User.objects.select_related("membership").get(pk=user.pk)
        assert list(Message.objects.visible_to(fresh)) == []
        assert Message.objects.visible_to(fresh).count() == 0
        User.objects.filter(pk=user.pk).update(is_active=True)
        assert sees(user, old_mail)


def test_no_membership_and_anonymous_see_nothing(team: Team, old_mail: Message) -> None:
    stranger = MembershipFactory(organization=team.organization).user
    stranger.membership.delete()
    stranger = User.objects.get(pk=stranger.pk)
    assert not Message.objects.visible_to(stranger).exists()
    assert not Message.objects.visible_to(AnonymousUser()).exists()
    assert Message.objects.count() == 1
