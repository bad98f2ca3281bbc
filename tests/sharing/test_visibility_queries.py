"""The rule is one SQL statement: a page of visible mail costs one query whatever the size of
the mailbox, and nothing is filtered in Python."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import Exists, OuterRef, QuerySet
from django.test.utils import CaptureQueriesContext

from mailboxes.models import AddressRole, Message, MessageOrigin, Thread
from records.models import User
from sharing.models import Permission
from tests.conftest import Team
from tests.mailboxes.factories import MailboxFactory
from tests.records.factories import CandidateFactory, MembershipFactory
from tests.sharing.messages import sharing_set, stored_message

pytestmark = pytest.mark.django_db


def _fill(team: Team, per_mailbox: int) -> Thread:
    """``per_mailbox`` messages in each of four mailboxes, one per permission, half of them
    visible to the teammate, all in one thread; return the thread."""
    shared = CandidateFactory(organization=team.organization, owner=team.owner, share_emails=True)
    unshared = CandidateFactory(organization=team.organization, owner=team.owner)
    thread = Thread.objects.create(organization=team.organization)
    owners = [team.owner, team.admin] + [
        MembershipFactory(organization=team.organization).user for _ in range(2)
    ]
    for owner, permission in zip(owners, Permission.values, strict=True):
        mailbox = MailboxFactory(owner=owner)
        sharing_set(mailbox, permission=permission, excluded=["excluded.example"])
        for number in range(per_mailbox):
            sender = "hr@excluded.example" if number % 4 == 1 else "ken@mail.example"
            stored_message(
                owner=owner,
                mailbox=mailbox,
                origin=MessageOrigin.HUB if number % 5 == 0 else MessageOrigin.POP3,
                subject=f"Offer {number}",
                addresses=[(AddressRole.FROM, sender), (AddressRole.TO, owner.email)],
                records=[shared if number % 2 else unshared] if number % 3 else [],
                thread=thread,
            )
    return thread


def _signed_in(user: User) -> User:
    """The user as a request has it: the access check has already loaded the membership."""
    return User.objects.select_related("membership").get(pk=user.pk)


@pytest.mark.parametrize("per_mailbox", [3, 40, 120])
def test_a_page_is_one_query_at_any_size(
    team: Team, per_mailbox: int, django_assert_num_queries
) -> None:
    thread = _fill(team, per_mailbox)
    for user in (team.teammate, team.admin, team.owner):
        viewer = _signed_in(user)
        visible = Message.objects.visible_to(viewer)
        with django_assert_num_queries(1):
            page = list(visible.order_by("-sort_at")[:25])
        with django_assert_num_queries(1):
            total = visible.count()
        assert len(page) == min(25, total)
        with django_assert_num_queries(1):
            list(visible.filter(thread=thread).order_by("sort_at")[:100])
        with django_assert_num_queries(1):
            list(visible.filter(subject__icontains="offer 1")[:25])
        with django_assert_num_queries(1):
            visible.filter(pk=page[0].pk).first()


def test_the_rule_is_one_lazy_sql_statement(team: Team, django_assert_num_queries) -> None:
    _fill(team, 20)
    viewer = _signed_in(team.teammate)
    with django_assert_num_queries(0):
        visible = Message.objects.visible_to(viewer)  # builds SQL, runs nothing
    assert isinstance(visible, QuerySet)
    with CaptureQueriesContext(connection) as captured:
        page = list(visible.order_by("-sort_at")[:10])
    assert len(captured.captured_queries) == 1
    sql = captured.captured_queries[0]["sql"].upper()
    assert sql.startswith("SELECT")
    assert "EXISTS" in sql  # the rule's subqueries run in the database
    assert "LIMIT 10" in sql  # the page is cut by the database after the rule filtered it
    assert len(page) == 10
    # Everything the database returned is kept: the SQL alone decided.
    with connection.cursor() as cursor:
        statement, params = visible.values_list("pk").order_by("pk").query.sql_with_params()
        cursor.execute(statement, params)
        from_sql = [row[0] for row in cursor.fetchall()]
    assert from_sql == list(visible.order_by("pk").values_list("pk", flat=True))
    assert 0 < len(from_sql) < Message.objects.count()


def test_the_rule_composes_with_other_filters(team: Team) -> None:
    """It is a queryset method: it narrows whatever queryset it is called on."""
    _fill(team, 10)
    viewer = _signed_in(team.teammate)
    everything = Message.objects.visible_to(viewer)
    narrowed = Message.objects.filter(subject__icontains="offer 1").visible_to(viewer)
    assert set(narrowed) == {m for m in everything if "offer 1" in m.subject.lower()}


def test_the_rule_finds_the_same_mail_inside_subqueries(team: Team) -> None:
    """The rule's SQL is compiled once and reused with the column names of each query it
    filters: inside a subquery, a subquery's subquery, or a correlated EXISTS (where Django
    renames the filtered query's tables), it keeps exactly the messages it keeps at the top."""
    thread = _fill(team, 12)
    everything = set(Message.objects.values_list("pk", flat=True))
    for user in (team.teammate, team.admin, team.owner):
        visible = Message.objects.visible_to(_signed_in(user))
        at_the_top = set(visible.values_list("pk", flat=True))
        in_a_subquery = Message.objects.filter(pk__in=visible.values("pk"))
        two_deep = Message.objects.filter(pk__in=in_a_subquery.values("pk"))
        correlated = Message.objects.filter(Exists(visible.filter(pk=OuterRef("pk"))))
        assert set() < at_the_top < everything
        assert set(in_a_subquery.values_list("pk", flat=True)) == at_the_top
        assert set(two_deep.values_list("pk", flat=True)) == at_the_top
        assert set(correlated.values_list("pk", flat=True)) == at_the_top
        # And composed with the thread's own filter, as the thread page does.
        assert set(visible.filter(thread=thread).values_list("pk", flat=True)) == at_the_top
