"""The mail reading pages: folders, the message page and its frame, downloads, record pages.

Every page starts from the visibility rule: a hidden id and a missing one are the same 404.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection, transaction
from django.test import Client as HttpClient
from django.urls import reverse
from django.utils import timezone

from mailboxes import selectors
from mailboxes.mailstore import raw_store
from mailboxes.models import AddressRole, Direction, Mailbox, Message, MessageOrigin, Thread
from records.models import User
from recruitmail.pagination import CappedPaginator
from sharing.models import MailboxSharing, Permission
from tests.conftest import Team
from tests.mailboxes.factories import MailboxFactory, MessageFactory, attachment_add
from tests.records.factories import CandidateFactory, ClientFactory, ContactFactory
from tests.sharing.messages import sharing_set

pytestmark = pytest.mark.django_db


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "mailstore")
    return tmp_path


@pytest.fixture
def mailbox(team: Team) -> Mailbox:
    """The owner's active mailbox, Private (the default)."""
    return MailboxFactory(owner=team.owner, email_address="owner@sakura.example")


@pytest.fixture
def candidate(team: Team) -> Any:
    return CandidateFactory(organization=team.organization, owner=team.owner)


def _received(team: Team, mailbox: Mailbox, **fields: Any) -> Message:
    return MessageFactory(owner=team.owner, mailbox=mailbox, **fields)


def _get(client: HttpClient, name: str, *args: Any, **params: str) -> Any:
    return client.get(reverse(name, args=args), params)


# --- Folders --------------------------------------------------------------------------------


def test_folders_show_the_right_mail_newest_first(
    team: Team, mailbox: Mailbox, candidate: Any
) -> None:
    older = _received(team, mailbox, subject="Older CV", sort_at=datetime(2026, 1, 1, tzinfo=UTC))
    newer = _received(
        team,
        mailbox,
        subject="Newer CV",
        records=[candidate],
        sort_at=datetime(2026, 2, 1, tzinfo=UTC),
    )
    _received(team, mailbox, subject="Binned", deleted_at=timezone.now())
    MessageFactory(
        owner=team.owner,
        mailbox=mailbox,
        direction=Direction.OUTGOING,
        origin=MessageOrigin.HUB,
        subject="Offer sent from the hub",
        addresses=[(AddressRole.TO, "hana@client.example")],
        records=[candidate],
    )
    mate_box = MailboxFactory(owner=team.teammate)
    sharing_set(mate_box, permission=Permission.PUBLIC)
    MessageFactory(
        owner=team.teammate, mailbox=mate_box, subject="Mate's news", records=[candidate]
    )
    MessageFactory(owner=team.teammate, mailbox=mate_box, subject="Mate's secret")  # no record

    client = team.client_for(team.owner)
    inbox = _get(client, "mail:inbox").content.decode()
    assert inbox.index(newer.subject) < inbox.index(older.subject)
    assert "Binned" not in inbox and "Offer sent" not in inbox and "Mate" not in inbox
    assert candidate.display_name in inbox  # the record chip
    assert 'class="message-row unread"' in inbox

    sent = _get(client, "mail:sent").content.decode()
    assert "Offer sent from the hub" in sent and "hana@client.example" in sent
    assert "Newer CV" not in sent

    shared = _get(client, "mail:shared").content.decode()
    assert "Mate&#x27;s news" in shared and "secret" not in shared
    assert "Newer CV" not in shared
    assert "Tomo Mate" in shared  # whose mailbox it is


def test_page_numbers_that_make_no_sense_give_a_valid_page(team: Team, mailbox: Mailbox) -> None:
    for number in range(30):
        _received(team, mailbox, subject=f"Message {number:02}")
    client = team.client_for(team.owner)
    for garbage in ("abc", "-1", "0", "99999", "1e9", "", "2\x00"):
        response = _get(client, "mail:inbox", page=garbage)
        assert response.status_code == 200
    assert "Message 04" in _get(client, "mail:inbox", page="2").content.decode()


def test_client_folder_only_when_the_mailbox_consolidates(team: Team, mailbox: Mailbox) -> None:
    company = ClientFactory(organization=team.organization, owner=team.owner, name="Fuji KK")
    contact = ContactFactory(organization=team.organization, owner=team.owner, company=company)
    loner = ContactFactory(organization=team.organization, owner=team.owner)
    _received(team, mailbox, subject="From the client", records=[company])
    _received(team, mailbox, subject="From its contact", records=[contact])
    _received(team, mailbox, subject="From a loner", records=[loner])
    client = team.client_for(team.owner)
    assert _get(client, "mail:client_folder").status_code == 404
    assert reverse("mail:client_folder") not in _get(client, "mail:inbox").content.decode()

    MailboxSharing.objects.filter(mailbox=mailbox).update(consolidate_client_mail=True)
    page = _get(client, "mail:client_folder")
    assert page.status_code == 200
    text = page.content.decode()
    assert "From the client" in text and "From its contact" in text
    assert "From a loner" not in text
    assert reverse("mail:client_folder") in _get(client, "mail:inbox").content.decode()


def test_header_has_folder_links_and_an_active_mailbox_switcher(
    team: Team, mailbox: Mailbox
) -> None:
    other = MailboxFactory(owner=team.owner, name="Private", is_active=False)
    page = _get(team.client_for(team.owner), "mail:inbox").content.decode()
    for name in ("mail:inbox", "mail:sent", "mail:shared", "records:candidate_list"):
        assert f'href="{reverse(name)}"' in page
    assert f'formaction="{reverse("mailboxes:activate", args=[other.pk])}"' in page
    assert f'name="next" value="{reverse("mail:inbox")}"' in page


def _fill(team: Team, mailbox: Mailbox, size: int) -> Any:
    """``size`` messages in each folder, each linked to two records; return one record."""
    records = [CandidateFactory(organization=team.organization, owner=team.owner) for _ in range(3)]
    company = ClientFactory(organization=team.organization, owner=team.owner)
    mate_box = MailboxFactory(owner=team.teammate)
    sharing_set(mate_box, permission=Permission.PUBLIC)
    for number in range(size):
        linked = [records[number % 3], company]
        _received(team, mailbox, subject=f"Hello {number}", records=linked)
        MessageFactory(
            owner=team.owner,
            mailbox=mailbox,
            direction=Direction.OUTGOING,
            subject=f"Reply {number}",
            records=linked,
        )
        MessageFactory(
            owner=team.teammate, mailbox=mate_box, subject=f"Hello {number}", records=linked
        )
    return records[0]


@pytest.mark.parametrize("size", [5, 60])
def test_list_pages_cost_the_same_queries_at_any_size(
    team: Team, mailbox: Mailbox, size: int, django_assert_max_num_queries: Any
) -> None:
    record = _fill(team, mailbox, size)
    MailboxSharing.objects.filter(mailbox=mailbox).update(consolidate_client_mail=True)
    client = team.client_for(team.owner)
    # Session, user, membership with its organisation; the header's mailboxes (the active one
    # among them); the count; the page; the chips' records (the record page adds its own few,
    # search pages without counting). The same at 5 and at 60 messages per folder.
    pages = [
        (reverse("mail:inbox"), {}, 7),
        (reverse("mail:sent"), {}, 7),
        (reverse("mail:shared"), {}, 7),
        (reverse("mail:client_folder"), {}, 7),
        (reverse("mail:search"), {"q": "Hello"}, 6),
        (record.get_absolute_url(), {}, 9),
    ]
    for url, params, queries in pages:
        with django_assert_max_num_queries(queries):
            response = client.get(url, params)
        assert response.status_code == 200, url
        rows = response.content.decode().count('class="message-row')
        assert 0 < rows <= 25, url


# --- The message page -----------------------------------------------------------------------


def test_message_page_shows_headers_in_the_readers_time_zone_and_marks_read(
    team: Team, mailbox: Mailbox, candidate: Any
) -> None:
    User.objects.filter(pk=team.owner.pk).update(time_zone="Asia/Tokyo")
    message = _received(
        team,
        mailbox,
        subject="面接のご案内",
        from_name="山田 太郎",
        body_text="山田です。\n<script>alert(1)</script>",
        sent_at=datetime(2026, 11, 20, 9, 30, tzinfo=UTC),
        addresses=[
            (AddressRole.FROM, "taro@example.jp"),
            (AddressRole.TO, "owner@sakura.example"),
            (AddressRole.CC, "boss@sakura.example"),
            (AddressRole.BCC, "secret@sakura.example"),
        ],
        records=[candidate],
    )
    response = _get(team.client_for(team.owner), "mail:message", message.pk)
    page = response.content.decode()
    assert response.status_code == 200
    assert "面接のご案内" in page and "山田 太郎" in page
    assert "boss@sakura.example" in page and "secret@sakura.example" in page  # Bcc: owner only
    assert "18:30" in page  # 09:30 UTC in Tokyo
    assert "&lt;script&gt;" in page and "<script>alert" not in page
    assert candidate.get_absolute_url() in page
    message.refresh_from_db()
    assert message.is_read


@pytest.mark.parametrize("size", [2, 80])
def test_message_page_costs_the_same_queries_at_any_size(
    team: Team, mailbox: Mailbox, size: int, django_assert_max_num_queries: Any
) -> None:
    """Recipients of every role in one query, cut at the display limit; records, attachments
    and the thread each one query, however many."""
    records = [CandidateFactory(organization=team.organization, owner=team.owner) for _ in range(3)]
    thread = Thread.objects.create(organization=team.organization, subject="Offer")
    roles = [AddressRole.TO, AddressRole.CC, AddressRole.BCC, AddressRole.REPLY_TO]
    addresses = [(AddressRole.FROM, "taro@example.jp")] + [
        (role, f"{role}{number}@list.example") for role in roles for number in range(size)
    ]
    message = _received(
        team, mailbox, subject="Offer", thread=thread, records=records, addresses=addresses
    )
    for number in range(size // 10 + 1):
        _received(team, mailbox, subject=f"Re: Offer {number}", thread=thread)
        attachment_add(message, filename=f"cv{number}.pdf")
    client = team.client_for(team.owner)
    # Session, user, membership with its organisation; the message; marking it read; its
    # recipients; who can see it (two); the header's mailboxes; records, attachments, thread.
    with django_assert_max_num_queries(12):
        page = _get(client, "mail:message", message.pk).content.decode()
    assert f"bcc{size - 1}@list.example" in page if size <= 50 else "and 30 more" in page
    assert "reply_to0@list.example" in page and "cc0@list.example" in page


def test_hidden_and_foreign_ids_are_404_everywhere(
    team: Team, mailbox: Mailbox, candidate: Any, media: Path
) -> None:
    private = _received(
        team,
        mailbox,
        records=[candidate],
        body_html="<p>hi</p>",
        raw=raw_store(raw=b"x", digest="ab" * 32),
    )
    attachment = attachment_add(private, filename="cv.pdf")
    mate_box = MailboxFactory(owner=team.teammate)
    sharing_set(mate_box, permission=Permission.PUBLIC)
    public = MessageFactory(owner=team.teammate, mailbox=mate_box, records=[candidate])
    missing = Message.objects.order_by("-pk").first().pk + 100

    def statuses(user: User, message_pk: int, attachment_pk: int) -> set[int]:
        client = team.client_for(user)
        return {
            client.get(reverse("mail:message", args=[message_pk])).status_code,
            client.get(reverse("mail:message_body", args=[message_pk])).status_code,
            client.get(reverse("mail:message_original", args=[message_pk])).status_code,
            client.get(reverse("mail:attachment", args=[attachment_pk])).status_code,
            client.post(reverse("mail:message_delete", args=[message_pk])).status_code,
        }

    assert statuses(team.teammate, private.pk, attachment.pk) == {404}
    assert statuses(team.admin, private.pk, attachment.pk) == {404}
    assert statuses(team.outsider, private.pk, attachment.pk) == {404}
    assert statuses(team.owner, missing, attachment.pk + 100) == {404}
    # Public mail a colleague may read, but not delete; an outsider never sees it.
    mate_client = team.client_for(team.owner)
    assert mate_client.get(reverse("mail:message", args=[public.pk])).status_code == 200
    assert mate_client.post(reverse("mail:message_delete", args=[public.pk])).status_code == 404
    assert (
        team.client_for(team.outsider).get(reverse("mail:message", args=[public.pk])).status_code
        == 404
    )
    public.refresh_from_db()
    assert not public.is_read and public.deleted_at is None  # a reader changes nothing
    private.refresh_from_db()
    assert private.deleted_at is None


def test_owner_deletes_in_the_hub(team: Team, mailbox: Mailbox) -> None:
    message = _received(team, mailbox, subject="Spam offer")
    client = team.client_for(team.owner)
    response = client.post(
        reverse("mail:message_delete", args=[message.pk]), {"next": "https://evil.example/"}
    )
    assert response.status_code == 302 and response["Location"] == reverse("mail:inbox")
    message.refresh_from_db()
    assert message.deleted_at is not None
    assert "Spam offer" not in _get(client, "mail:inbox").content.decode()
    assert _get(client, "mail:message", message.pk).status_code == 404
    assert client.get(reverse("mail:message_delete", args=[message.pk])).status_code == 405


def test_a_huge_message_is_cut_with_show_all(team: Team, mailbox: Mailbox) -> None:
    body = "あ" * 250_000 + "END-OF-BODY"
    recipients = [(AddressRole.TO, f"person{n}@list.example") for n in range(1200)]
    message = _received(team, mailbox, body_text=body, addresses=recipients)
    client = team.client_for(team.owner)
    page = _get(client, "mail:message", message.pk).content.decode()
    assert "END-OF-BODY" not in page and "only its beginning is shown" in page
    assert "person49@list.example" in page and "person50@list.example" not in page
    assert "and 1150 more" in page
    full = _get(client, "mail:message", message.pk, full="1").content.decode()
    assert "END-OF-BODY" in full and "person1199@list.example" in full


def test_thread_lists_only_visible_messages_in_order(
    team: Team, mailbox: Mailbox, candidate: Any
) -> None:
    thread = Thread.objects.create(organization=team.organization, subject="Offer")
    first = _received(
        team, mailbox, subject="Offer", thread=thread, sort_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    reply = _received(
        team, mailbox, subject="Re: Offer", thread=thread, sort_at=datetime(2026, 1, 2, tzinfo=UTC)
    )
    mate_box = MailboxFactory(owner=team.teammate)  # Private: its part of the thread is hidden
    MessageFactory(
        owner=team.teammate,
        mailbox=mate_box,
        subject="Mate's aside",
        thread=thread,
        records=[candidate],
    )
    _received(team, mailbox, subject="Deleted part", thread=thread, deleted_at=timezone.now())
    page = _get(team.client_for(team.owner), "mail:message", reply.pk).content.decode()
    thread_list = page[page.index('<ol class="thread">') :]
    assert thread_list.index(reverse("mail:message", args=[first.pk])) < thread_list.index(
        "Re: Offer"
    )
    assert "aside" not in page and "Deleted part" not in page


# --- Attachments and the original -----------------------------------------------------------


@pytest.mark.parametrize(
    ("stored_name", "served_name"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("CON.txt", "_CON.txt"),
        ("a\x1fb\r\nContent-Type: x.txt", "abContent-Type_ x.txt"),
        ("\u202etxt.exe", "txt.exe"),
        ("履歴書.pdf", "履歴書.pdf"),
    ],
)
def test_attachment_download_headers(
    team: Team, mailbox: Mailbox, media: Path, stored_name: str, served_name: str
) -> None:
    message = _received(team, mailbox)
    attachment = attachment_add(message, filename=stored_name, content_type="text/html")
    response = team.client_for(team.owner).get(reverse("mail:attachment", args=[attachment.pk]))
    assert response.status_code == 200
    assert response.getvalue() == b"%PDF-1.4 test"
    disposition = response["Content-Disposition"]
    assert disposition.startswith('attachment; filename="')
    assert disposition.endswith(f"filename*=UTF-8''{quote(served_name, safe='')}")
    assert "\n" not in disposition and "\x00" not in disposition and "/" not in disposition
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Type"] == "text/html"
    assert "sandbox" in response["Content-Security-Policy"]


def test_message_page_lists_attachments(team: Team, mailbox: Mailbox, media: Path) -> None:
    message = _received(team, mailbox)
    attachment = attachment_add(message, filename="職務経歴書.pdf", payload=b"x" * 2048)
    page = _get(team.client_for(team.owner), "mail:message", message.pk).content.decode()
    assert "職務経歴書.pdf" in page and "2.0\xa0KB" in page and "application/pdf" in page
    assert reverse("mail:attachment", args=[attachment.pk]) in page


def test_view_original_is_plain_text_decoded_leniently(
    team: Team, mailbox: Mailbox, media: Path
) -> None:
    raw = "Subject: =?utf-8?q?x?=\r\n\r\n面接は月曜です。\r\n".encode("cp932") + b"<script>\xff\r\n"
    message = _received(team, mailbox, raw=raw_store(raw=raw, digest="cd" * 32), raw_size=len(raw))
    response = _get(team.client_for(team.owner), "mail:message_original", message.pk)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["X-Content-Type-Options"] == "nosniff"
    text = response.content.decode("utf-8")
    assert "面接は月曜です。" in text and "<script>" in text
    no_raw = _received(team, mailbox)
    assert _get(team.client_for(team.owner), "mail:message_original", no_raw.pk).status_code == 404


# --- Record pages ---------------------------------------------------------------------------


def test_record_page_lists_its_visible_mail(team: Team, mailbox: Mailbox, candidate: Any) -> None:
    _received(team, mailbox, subject="Owner's talk with the candidate", records=[candidate])
    _received(team, mailbox, subject="Unrelated")
    mate_box = MailboxFactory(owner=team.teammate)
    MessageFactory(
        owner=team.teammate, mailbox=mate_box, subject="Mate's private talk", records=[candidate]
    )
    page = team.client_for(team.owner).get(candidate.get_absolute_url()).content.decode()
    assert "Owner&#x27;s talk" in page
    assert "Unrelated" not in page and "private talk" not in page
    mate_page = team.client_for(team.teammate).get(candidate.get_absolute_url()).content.decode()
    assert "Mate&#x27;s private talk" in mate_page and "Owner&#x27;s talk" not in mate_page


@pytest.mark.parametrize(
    ("permission", "shown"),
    [
        (Permission.CUSTOM, True),
        (Permission.PUBLIC, False),
        (Permission.PRIVATE, False),
        (Permission.ADMIN, False),
    ],
)
def test_share_emails_checkbox_only_for_custom(
    team: Team, mailbox: Mailbox, candidate: Any, permission: str, shown: bool
) -> None:
    sharing_set(mailbox, permission=permission)
    client = team.client_for(team.owner)
    url = reverse("mail:record_share_emails", args=[candidate.pk])
    page = client.get(candidate.get_absolute_url()).content.decode()
    assert (f'action="{url}"' in page) is shown
    response = client.post(url, {"share_emails": "on"})
    candidate.refresh_from_db()
    if shown:
        assert response.status_code == 302 and candidate.share_emails
        client.post(url, {})
        candidate.refresh_from_db()
        assert not candidate.share_emails
    else:
        assert response.status_code == 403 and not candidate.share_emails


def test_share_emails_of_another_organisations_record_is_404(team: Team) -> None:
    sharing_set(MailboxFactory(owner=team.outsider), permission=Permission.CUSTOM)
    foreign = CandidateFactory(organization=team.organization, owner=team.owner)
    response = team.client_for(team.outsider).post(
        reverse("mail:record_share_emails", args=[foreign.pk]), {"share_emails": "on"}
    )
    assert response.status_code == 404


def test_long_folders_count_only_as_far_as_needed(team: Team, settings) -> None:  # type: ignore[no-untyped-def]
    from mailboxes import selectors

    settings.DEBUG = False
    mailbox = MailboxFactory(owner=team.owner)
    for _ in range(60):
        MessageFactory(owner=team.owner, mailbox=mailbox)
    page = selectors.page_of(
        Message.objects.visible_to(team.owner), user=team.owner, number="1", count_cap=30
    )
    assert page.paginator.capped and page.paginator.count_label == "50+" and page.has_next()
    deep = selectors.page_of(
        Message.objects.visible_to(team.owner), user=team.owner, number="2", count_cap=30
    )
    assert deep.number == 2 and deep.has_next()
    last = selectors.page_of(
        Message.objects.visible_to(team.owner), user=team.owner, number="3", count_cap=30
    )
    assert not last.paginator.capped and not last.has_next() and len(last.object_list) == 10


@pytest.mark.postgresql_schema  # extended statistics are PostgreSQL's
def test_postgresql_knows_owner_and_mailbox_go_together() -> None:
    """Without these statistics PostgreSQL sorts a whole mailbox for one page of its Inbox
    (migration 0005 says why; bench/pages.py measured it)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT stxkind FROM pg_statistic_ext WHERE stxname = 'message_owner_mailbox'"
        )
        (kinds,) = cursor.fetchone()
    assert set(kinds) >= {"f", "m"}  # functional dependencies, most common pairs


@pytest.mark.postgresql_schema  # included columns are PostgreSQL's
@pytest.mark.parametrize("folder", [selectors.Folder.INBOX, selectors.Folder.SENT])
def test_folder_counts_read_the_folder_index_alone(
    team: Team, mailbox: Mailbox, folder: str
) -> None:
    """Inbox's and Sent's capped count is an index-only scan of ``message_folder_idx``, which
    stops at the cap whatever the mailbox's size (migration 0008 says why). On a test table of a
    few rows any plan is as cheap as any other, so the other ways are ruled out (a sequential
    scan, bitmaps, a sort, and, in a rolled-back savepoint, the table's other indexes): what
    is checked is that the folders' filters, as the views build them, can be answered from the
    index (its columns, its condition) in the folder's order without reading the messages."""
    messages = selectors.folder_messages(user=team.owner, folder=folder, mailbox=mailbox)
    paginator = CappedPaginator(
        selectors.message_rows(messages, user=team.owner), per_page=25, limit=201
    )
    queries = []
    with connection.execute_wrapper(
        lambda execute, sql, params, many, context: (
            queries.append((sql, params)) or execute(sql, params, many, context)
        )
    ):
        assert paginator.count == 0
    ((sql, params),) = queries
    with transaction.atomic(), connection.cursor() as cursor:
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            cursor.execute(f"SET LOCAL {setting} = off")
        cursor.execute(
            "SELECT indexrelid::regclass::text FROM pg_index "
            "WHERE indrelid = 'mailboxes_message'::regclass AND NOT indisunique "
            "AND indexrelid <> 'message_folder_idx'::regclass"
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f"DROP INDEX {name}")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        transaction.set_rollback(True)
    assert "Index Only Scan using message_folder_idx" in plan, plan
    assert " Sort " not in plan, plan  # read in the folder's order, stopped at the cap
