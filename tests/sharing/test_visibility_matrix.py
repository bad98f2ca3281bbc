"""The permission matrix: every organisation × viewer × permission × kind of message × surface.

The expected answer of each cell comes from ``expected`` below: the rule of DESIGN.md ("The
visibility rule") restated in plain Python over this file's own description of each message
(``Kind``). It deliberately does not call ``sharing.visibility`` or any queryset: the code under
test is only ever asked through a surface.

A surface is a callable ``(viewer, message) -> bool``: does ``viewer`` see ``message`` there?
``viewer.user`` is the signed-in user and ``viewer.client`` a test client signed in as that
user, so HTTP pages (inbox, record page, message page, thread page, attachment download,
search, JSON) plug in as more entries of ``SURFACES``. Every surface runs the whole matrix and
reports every failing cell at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property

import pytest
from django.test import Client as HttpClient
from django.urls import reverse

from mailboxes.models import AddressRole, Direction, Message, MessageOrigin, Thread
from records.models import Organization, Record, Role, User
from tests.mailboxes.factories import MailboxFactory
from tests.records.factories import (
    CandidateFactory,
    ClientFactory,
    MembershipFactory,
    OrganizationFactory,
)
from tests.sharing.messages import sharing_set, stored_message

pytestmark = pytest.mark.django_db

FROM, TO, CC, BCC, REPLY_TO = (
    AddressRole.FROM,
    AddressRole.TO,
    AddressRole.CC,
    AddressRole.BCC,
    AddressRole.REPLY_TO,
)
POP3, HUB = MessageOrigin.POP3, MessageOrigin.HUB
PERMISSIONS = ["private", "admin", "public", "custom"]

# The description of the world: plain strings, independent of the code under test.
OWN = "<the mailbox's own address>"
SHARED, UNSHARED = "shared record", "unshared record"
EXCLUDED_DOMAIN = "excluded.example"
CANDIDATE = "ken@candidates.example"
# Viewer roles, relative to the message.
OWNER, RECRUITER, ADMIN, OTHER_ORGANISATION, DEACTIVATED = (
    "owner",
    "another recruiter",
    "admin",
    "user of another organisation",
    "deactivated user",
)


@dataclass(frozen=True)
class Kind:
    """What a message is, as this test describes it."""

    origin: str = POP3
    direction: str = Direction.INCOMING
    addresses: tuple[tuple[str, str], ...] = ((FROM, CANDIDATE), (TO, OWN))
    links: tuple[str, ...] = (SHARED,)
    in_mailbox: bool = True  # False: sent by the organisation's system sender, no mailbox
    thread: str = ""  # messages of one mailbox with the same label share a thread


SENT = {"direction": Direction.OUTGOING, "addresses": ((FROM, OWN), (TO, CANDIDATE))}
IN_SHARED_THREAD = "thread whose other messages are shared"

KINDS: dict[str, Kind] = {
    "received over POP3": Kind(),
    "own sent mail fetched over POP3": Kind(**SENT),
    "sent from the hub": Kind(origin=HUB, links=(UNSHARED,), **SENT),
    "sent from the hub by the system sender": Kind(
        origin=HUB,
        direction=Direction.OUTGOING,
        addresses=((FROM, "noreply@agency-system.example"), (TO, CANDIDATE)),
        links=(UNSHARED,),
        in_mailbox=False,
    ),
    "sent from the hub, linked to no record": Kind(origin=HUB, links=(), **SENT),
    "linked to a shared record": Kind(addresses=((FROM, "aya@client.example"), (TO, OWN))),
    "linked to an unshared record": Kind(links=(UNSHARED,)),
    "linked to an unshared and a shared record": Kind(links=(UNSHARED, SHARED)),
    "linked to no record": Kind(links=()),
    "own sent mail linked to no record": Kind(links=(), **SENT),
    "from an excluded domain": Kind(addresses=((FROM, "hr@excluded.example"), (TO, OWN))),
    "to an excluded domain": Kind(
        direction=Direction.OUTGOING, addresses=((FROM, OWN), (TO, "hr@excluded.example"))
    ),
    "cc to an excluded domain": Kind(
        addresses=((FROM, CANDIDATE), (TO, OWN), (CC, "boss@excluded.example"))
    ),
    "from a subdomain of an excluded domain": Kind(
        addresses=((FROM, "hr@tokyo.excluded.example"), (TO, OWN))
    ),
    "from a look-alike of an excluded domain": Kind(
        addresses=((FROM, "hr@notexcluded.example"), (TO, OWN))
    ),
    "to the mailbox's own address only (its domain is excluded)": Kind(
        addresses=((FROM, OWN), (TO, OWN))
    ),
    "bcc only to an excluded domain": Kind(
        direction=Direction.OUTGOING,
        addresses=((FROM, OWN), (TO, CANDIDATE), (BCC, "boss@excluded.example")),
    ),
    "reply-to only in an excluded domain": Kind(
        addresses=((FROM, CANDIDATE), (TO, OWN), (REPLY_TO, "hr@excluded.example"))
    ),
    "thread start sent from the hub": Kind(
        origin=HUB, links=(UNSHARED,), thread=IN_SHARED_THREAD, **SENT
    ),
    "thread reply linked to a shared record": Kind(thread=IN_SHARED_THREAD),
    "thread reply linked to no record": Kind(links=(), thread=IN_SHARED_THREAD),
    "thread reply linked to an unshared record": Kind(links=(UNSHARED,), thread=IN_SHARED_THREAD),
    "thread reply from an excluded domain": Kind(
        addresses=((FROM, "hr@excluded.example"), (TO, OWN)), thread=IN_SHARED_THREAD
    ),
}


def _in_excluded_domain(address: str, excluded_domains: list[str]) -> bool:
    domain = address.rpartition("@")[2]
    return any(domain == d or domain.endswith("." + d) for d in excluded_domains)


def expected(viewer: str, permission: str, kind: Kind, excluded_domains: list[str]) -> bool:
    """DESIGN.md's visibility rule, restated: does a ``viewer`` (a role relative to the message)
    see a message of this ``kind`` from a mailbox with this ``permission``?"""
    if viewer in (DEACTIVATED, OTHER_ORGANISATION):
        return False
    if viewer == OWNER:
        return True
    if not kind.links:  # mail linked to no record is the owner's alone
        return False
    if kind.origin == HUB:  # every member sees every record for now
        return True
    if permission == "private":
        return False
    if permission == "admin":
        return viewer == ADMIN
    if permission == "public":
        outside = [a for role, a in kind.addresses if role in (FROM, TO, CC) and a != OWN]
        return not any(_in_excluded_domain(a, excluded_domains) for a in outside)
    if permission == "custom":
        return SHARED in kind.links
    raise AssertionError(f"unknown permission {permission}")


# --- The world: two organisations built alike ----------------------------------------------


@dataclass
class Viewer:
    user: User
    name: str  # e.g. "sakura/admin", for failure reports
    organization: str
    is_admin: bool
    # Also asked about the other organisation's mail (its admin and its Public mailbox's owner,
    # who see most at home; the rest would only repeat "not seen" and slow the matrix down).
    asks_abroad: bool = False

    @cached_property
    def client(self) -> HttpClient:
        client = HttpClient()
        client.force_login(self.user)
        return client


@dataclass
class Cell:
    message: Message
    organization: str
    permission: str
    kind_name: str
    kind: Kind
    owner: User
    excluded_domains: list[str]

    def role_of(self, viewer: Viewer) -> str:
        if viewer.user.pk == self.owner.pk:
            return OWNER
        if not viewer.user.is_active:
            return DEACTIVATED
        if viewer.organization != self.organization:
            return OTHER_ORGANISATION
        return ADMIN if viewer.is_admin else RECRUITER


@dataclass
class World:
    viewers: list[Viewer] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)

    def pairs(self) -> Iterator[tuple[Viewer, Cell]]:
        for viewer in self.viewers:
            for cell in self.cells:
                if viewer.organization == cell.organization or viewer.asks_abroad:
                    yield viewer, cell


def _member(organization: Organization, email: str, role: str, *, active: bool = True) -> User:
    return MembershipFactory(
        organization=organization, role=role, user__email=email, user__is_active=active
    ).user


def _build_organization(world: World, label: str) -> None:
    organization = OrganizationFactory(name=f"{label} agency")
    own_domain = f"{label}.example"
    # The mailbox's own domain is excluded too: its own address must never exclude its mail.
    excluded = [EXCLUDED_DOMAIN, own_domain]
    admin = _member(organization, f"admin@{own_domain}", Role.ADMIN)
    recruiter = _member(organization, f"recruiter@{own_domain}", Role.RECRUITER)
    gone = _member(organization, f"gone@{own_domain}", Role.RECRUITER, active=False)
    gone_admin = _member(organization, f"gone-admin@{own_domain}", Role.ADMIN, active=False)
    records: dict[str, Record] = {
        SHARED: CandidateFactory(organization=organization, owner=recruiter, share_emails=True),
        UNSHARED: ClientFactory(organization=organization, owner=recruiter, share_emails=False),
    }
    owners = {}
    for permission in PERMISSIONS:
        owner = _member(organization, f"{permission}.owner@{own_domain}", Role.RECRUITER)
        owners[permission] = owner
        mailbox = MailboxFactory(owner=owner, email_address=owner.email)
        sharing_set(mailbox, permission=permission, excluded=excluded)
        threads: dict[str, Thread] = {}
        for kind_name, kind in KINDS.items():
            label_of_thread = kind.thread or kind_name
            if label_of_thread not in threads:
                threads[label_of_thread] = Thread.objects.create(
                    organization=organization, subject=label_of_thread
                )
            message = stored_message(
                owner=owner,
                mailbox=mailbox if kind.in_mailbox else None,
                origin=kind.origin,
                direction=kind.direction,
                subject=f"Re: [{label}|{permission}|{kind_name}]",
                addresses=[(r, owner.email if a == OWN else a) for r, a in kind.addresses],
                records=[records[link] for link in kind.links],
                thread=threads[label_of_thread],
            )
            world.cells.append(Cell(message, label, permission, kind_name, kind, owner, excluded))
    for name, user in [
        ("admin", admin),
        ("recruiter", recruiter),
        ("deactivated recruiter", gone),
        ("deactivated admin", gone_admin),
        *((f"{permission} owner", owners[permission]) for permission in PERMISSIONS),
    ]:
        is_admin = user.membership.role == Role.ADMIN
        asks_abroad = name in ("admin", "public owner")
        world.viewers.append(Viewer(user, f"{label}/{name}", label, is_admin, asks_abroad))


@pytest.fixture
def world() -> World:
    world = World()
    for label in ("sakura", "fuji"):
        _build_organization(world, label)
    return world


# --- Surfaces ------------------------------------------------------------------------------


def seen_in_list(viewer: Viewer, message: Message) -> bool:
    return message.pk in [m.pk for m in Message.objects.visible_to(viewer.user)]


def seen_in_count(viewer: Viewer, message: Message) -> bool:
    return Message.objects.visible_to(viewer.user).filter(pk=message.pk).count() == 1


def seen_in_detail_lookup(viewer: Viewer, message: Message) -> bool:
    return Message.objects.visible_to(viewer.user).filter(pk=message.pk).first() is not None


def seen_in_search(viewer: Viewer, message: Message) -> bool:
    # The subject's bracketed tag is unique per message; searched upper-cased (icontains).
    tag = message.subject[message.subject.index("[") :].upper()
    found = Message.objects.visible_to(viewer.user).filter(subject__icontains=tag)
    return message.pk in found.values_list("pk", flat=True)


def seen_in_thread(viewer: Viewer, message: Message) -> bool:
    thread = Message.objects.visible_to(viewer.user).filter(thread_id=message.thread_id)
    return message.pk in thread.values_list("pk", flat=True)


def _page_seen(viewer: Viewer, url: str) -> bool:
    """200: seen; 404: hidden (the same as missing); a deactivated user is sent to sign in."""
    response = viewer.client.get(url)
    if response.status_code == 302:
        assert response["Location"].startswith(reverse("login")), response["Location"]
        return False
    assert response.status_code in (200, 404), response.status_code
    return response.status_code == 200


def seen_on_message_page(viewer: Viewer, message: Message) -> bool:
    return _page_seen(viewer, reverse("mail:message", args=[message.pk]))


def seen_on_search_page(viewer: Viewer, message: Message) -> bool:
    tag = message.subject[message.subject.index("[") :]
    page = viewer.client.get(reverse("mail:search"), {"q": tag}).content.decode()
    return reverse("mail:message", args=[message.pk]) in page


SURFACES: list[Callable[[Viewer, Message], bool]] = [
    seen_in_list,
    seen_in_count,
    seen_in_detail_lookup,
    seen_in_search,
    seen_in_thread,
    # Over HTTP, as a person meets them.
    seen_on_message_page,
    seen_on_search_page,
]


def _mismatches(world: World, surface: Callable[[Viewer, Message], bool]) -> list[str]:
    failures = []
    for viewer, cell in world.pairs():
        role = cell.role_of(viewer)
        want = expected(role, cell.permission, cell.kind, cell.excluded_domains)
        got = surface(viewer, cell.message)
        if got != want:
            failures.append(
                f"{surface.__name__}: {viewer.name} ({role}) on {cell.organization}'s "
                f"{cell.permission} mailbox, {cell.kind_name!r}: expected "
                f"{'seen' if want else 'not seen'}, got {'seen' if got else 'not seen'}"
            )
    return failures


@pytest.mark.parametrize("surface", SURFACES, ids=lambda surface: surface.__name__)
def test_every_cell_of_the_matrix(world: World, surface: Callable[[Viewer, Message], bool]) -> None:
    failures = _mismatches(world, surface)
    assert not failures, f"{len(failures)} cells differ from the rule:\n" + "\n".join(failures)


def test_each_viewers_whole_list_and_count_match_the_rule(world: World) -> None:
    failures = []
    for viewer in world.viewers:
        want = {
            cell.message.pk
            for cell in world.cells
            if expected(cell.role_of(viewer), cell.permission, cell.kind, cell.excluded_domains)
        }
        visible = Message.objects.visible_to(viewer.user)
        listed = [m.pk for m in visible.order_by("-sort_at")]
        if sorted(listed) != sorted(want):  # also catches a message listed twice (a bad join)
            failures.append(f"{viewer.name}: listed {len(listed)} messages, expected {len(want)}")
        if visible.count() != len(want):
            failures.append(f"{viewer.name}: count {visible.count()}, expected {len(want)}")
    assert not failures, "\n".join(failures)


def test_own_mail_is_the_rules_owner_row(world: World) -> None:
    """``owned_by`` (Inbox, Sent, the client folder) gives each viewer exactly what the whole
    rule shows them of their own mail: their own messages in their organisation, nothing for a
    deactivated owner."""
    failures = []
    for viewer in world.viewers:
        want = {
            cell.message.pk
            for cell in world.cells
            if cell.role_of(viewer) == OWNER
            and expected(OWNER, cell.permission, cell.kind, cell.excluded_domains)
        }
        owned = sorted(Message.objects.owned_by(viewer.user).values_list("pk", flat=True))
        through_rule = Message.objects.visible_to(viewer.user).filter(owner_id=viewer.user.pk)
        if owned != sorted(want) or owned != sorted(through_rule.values_list("pk", flat=True)):
            failures.append(f"{viewer.name}: owns {len(owned)} messages, expected {len(want)}")
    assert not failures, "\n".join(failures)
    assert any(Message.objects.owned_by(viewer.user).exists() for viewer in world.viewers)


def test_the_matrix_covers_every_role_and_both_answers(world: World) -> None:
    """Guard the generator: each role meets each permission, and the rule says both yes and no
    for the roles that depend on the permission."""
    answers: dict[tuple[str, str], set[bool]] = {}
    for viewer, cell in world.pairs():
        role = cell.role_of(viewer)
        answer = expected(role, cell.permission, cell.kind, cell.excluded_domains)
        answers.setdefault((role, cell.permission), set()).add(answer)
    roles = {OWNER, RECRUITER, ADMIN, OTHER_ORGANISATION, DEACTIVATED}
    assert {role for role, _permission in answers} == roles
    for permission in PERMISSIONS:
        assert answers[(OWNER, permission)] == {True}
        assert answers[(OTHER_ORGANISATION, permission)] == {False}
        assert answers[(DEACTIVATED, permission)] == {False}
    for role in (RECRUITER, ADMIN):
        for permission in ("public", "custom"):
            assert answers[(role, permission)] == {True, False}
    assert answers[(ADMIN, "admin")] == {True, False}
