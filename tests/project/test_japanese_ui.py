"""The app in Japanese: a user who chose 日本語 (or whose browser asks for it) sees no English UI.

Each page's visible text is compared with the English source strings of the catalogue: a text
node (or a title, placeholder or aria-label) that is exactly an English msgid with a different
Japanese translation is a string that escaped translation.
"""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser
from pathlib import Path

import polib
import pytest
from django.test import Client as HttpClient
from django.urls import reverse

from mailboxes.models import Direction, Mailbox, Message, MessageOrigin, PollOutcome, PollReport
from records.models import Candidate, User
from sharing.services import sharing_update
from tests.conftest import Team
from tests.mailboxes.factories import MailboxFactory, MessageFactory
from tests.records.factories import CandidateFactory, ClientFactory, ContactFactory

CATALOGUE = Path(__file__).resolve().parents[2] / "locale" / "ja" / "LC_MESSAGES" / "django.po"
NAVIGATION = {
    "メール作成": "Compose",
    "受信トレイ": "Inbox",
    "送信済み": "Sent",
    "共有されたメール": "Shared with me",
    "候補者": "Candidates",
    "担当者": "Contacts",
    "クライアント": "Clients",
    "メールアカウント": "Mail accounts",
    "ログアウト": "Sign out",
}
ADMIN_NAVIGATION = {"メンバー": "Members", "メール設定": "Mail settings"}
# 2025-01-10 00:30 UTC is 09:30 on the same day in Tokyo.
KNOWN_MOMENT = dt.datetime(2025, 1, 10, 0, 30, tzinfo=dt.UTC)


class _VisibleText(HTMLParser):
    """Text nodes, and the attributes a reader sees or hears, of a page (scripts left out)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:
            if name in ("title", "placeholder", "aria-label", "alt") and value:
                self.texts.append(value.strip())

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.texts.append(" ".join(data.split()))


def _english_msgids() -> set[str]:
    """Source strings whose Japanese differs from the English (so "Cc" or "SSL/TLS" are left out)."""
    english = set()
    for entry in polib.pofile(str(CATALOGUE)):
        translated = entry.msgstr_plural.get(0, "") if entry.msgid_plural else entry.msgstr
        if entry.msgid != translated and "%" not in entry.msgid:
            english.add(entry.msgid)
    return english


ENGLISH = _english_msgids()


def _untranslated(html: str) -> list[str]:
    parser = _VisibleText()
    parser.feed(html)
    return sorted({text for text in parser.texts if text in ENGLISH})


def _japanese_page(client: HttpClient, url: str, *expected: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    assert response["Content-Language"] == "ja"
    html = response.content.decode()
    assert '<html lang="ja">' in html
    for text in expected:
        assert text in html, f"{url}: {text!r} missing"
    assert not _untranslated(html), f"{url} shows English: {_untranslated(html)}"
    return html


def _speaks_japanese(user: User) -> User:
    user.language = "ja"
    user.time_zone = "Asia/Tokyo"
    user.save(update_fields=["language", "time_zone"])
    return user


@pytest.fixture
def ja_client(team: Team) -> HttpClient:
    # The browser asks for English: the user's own choice wins.
    client = HttpClient(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(_speaks_japanese(team.owner))
    return client


@pytest.fixture
def mailbox(team: Team) -> Mailbox:
    created: Mailbox = MailboxFactory(owner=team.owner, name="Work")
    return created


def test_recruiter_pages_are_japanese(
    ja_client: HttpClient, team: Team, mailbox: Mailbox, settings: object, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = str(tmp_path)  # type: ignore[attr-defined]
    client_record = ClientFactory(organization=team.organization, owner=team.owner)
    ContactFactory(organization=team.organization, owner=team.owner, company=client_record)
    candidate: Candidate = CandidateFactory(
        organization=team.organization, owner=team.owner, addresses=["taro@example.jp"]
    )
    message: Message = MessageFactory(
        owner=team.owner, mailbox=mailbox, records=[candidate], sort_at=KNOWN_MOMENT
    )
    MessageFactory(
        owner=team.owner,
        mailbox=mailbox,
        origin=MessageOrigin.HUB,
        direction=Direction.OUTGOING,
        subject="Offer",
        addresses=[("from", team.owner.email), ("to", "taro@example.jp")],
    )
    PollReport.objects.create(
        mailbox=mailbox,
        started_at=KNOWN_MOMENT,
        finished_at=KNOWN_MOMENT,
        outcome=PollOutcome.OK,
        new=3,
        imported=3,
    )

    nav = _japanese_page(ja_client, reverse("records:candidate_list"), "候補者を追加", "所有者")
    for japanese, english in NAVIGATION.items():
        assert japanese in nav and f">{english}<" not in nav
    for japanese in ADMIN_NAVIGATION:
        assert japanese not in nav  # a recruiter has no admin pages
    _japanese_page(ja_client, reverse("records:contact_list"), "担当者を追加")
    _japanese_page(ja_client, reverse("records:client_list"), "クライアントを追加")
    _japanese_page(
        ja_client, candidate.get_absolute_url(), "メールアドレス", "メールを送信", "Interview"
    )
    _japanese_page(ja_client, reverse("mailboxes:list"), "POP3メールアカウントを追加", "使用中")
    _japanese_page(
        ja_client,
        reverse("mailboxes:add"),
        "POP3でメールアカウントを設定",
        "受信サーバー",
        "このアカウントのメールを閲覧できる人",
        "非公開（自分のみ）: 自分のみ",
    )
    detail = _japanese_page(
        ja_client,
        reverse("mailboxes:detail", args=[mailbox.pk]),
        "今すぐ受信",
        "接続テスト",
        "最近の受信履歴",
        "前回の受信：完了（新着3件のうち3件を取り込み）",
    )
    assert "2025年1月10日9:30" in detail  # the poll's start, in the user's time zone
    # "Fetch now" progress templates for poll_progress.js keep their placeholders.
    assert 'data-running="受信中：新着%(new)s件のうち%(imported)s件を取り込み済み…"' in detail
    _japanese_page(ja_client, reverse("mailboxes:edit", args=[mailbox.pk]), "保存")
    _japanese_page(ja_client, reverse("mail:inbox"), "受信トレイ", "メールを検索")
    _japanese_page(ja_client, reverse("mail:sent"), "送信済み", "宛先:")
    _japanese_page(ja_client, reverse("mail:shared"), "共有されたメール")
    _japanese_page(ja_client, reverse("mail:search") + "?q=Interview", "に一致するメール：1件")
    message_page = _japanese_page(
        ja_client, reverse("mail:message", args=[message.pk]), "全員に返信", "転送", "差出人"
    )
    assert "2025年1月10日9:30 (JST)" in message_page
    assert "このメールを閲覧できる人" in message_page and "自分（所有者）" in message_page
    assert "（所有者）." not in message_page  # no English full stop after Japanese
    _japanese_page(ja_client, reverse("mail:compose"), "新規メール", "宛先", "件名", "送信")
    _japanese_page(ja_client, reverse("mail:compose") + f"?reply={message.pk}", "返信")
    _japanese_page(
        ja_client,
        reverse("sharing:mailbox", args=[mailbox.pk]),
        "のメールを閲覧できる人",
        "全体に公開（レコードのメールを全員と共有）",
        "除外ドメイン",
        "最大5件まで",
    )
    _japanese_page(ja_client, reverse("profile"), "個人設定", "タイムゾーン", "言語")


def test_sharing_preview_and_messages_are_japanese(
    ja_client: HttpClient, team: Team, mailbox: Mailbox
) -> None:
    candidate = CandidateFactory(organization=team.organization, owner=team.owner)
    MessageFactory(owner=team.owner, mailbox=mailbox, records=[candidate])
    url = reverse("sharing:mailbox", args=[mailbox.pk])
    preview = ja_client.post(url, {"permission": "public", "preview": "1"}).content.decode()
    assert "保存すると：" in preview
    assert "件のレコードに関するメール1件が、リクルーター1人に表示されるようになります。" in preview
    saved = ja_client.post(url, {"permission": "public"}, follow=True)
    assert "共有設定を保存しました。" in saved.content.decode()


def test_admin_pages_are_japanese(team: Team, mailbox: Mailbox) -> None:
    sharing_update(
        mailbox=mailbox,
        actor=team.owner,
        permission="public",
        excluded_domains=[],
        consolidate=True,
    )
    admin = HttpClient()
    admin.force_login(_speaks_japanese(team.admin))
    members = _japanese_page(admin, reverse("member_list"), "ユーザーを追加・招待", "権限を変更")
    for japanese, english in {**NAVIGATION, **ADMIN_NAVIGATION}.items():
        assert japanese in members and f">{english}<" not in members
    assert "管理者" in members and "リクルーター" in members and "有効" in members
    _japanese_page(admin, reverse("member_create"), "初期パスワード")
    _japanese_page(
        admin, reverse("sharing:admin"), "メンバーのメール設定", "引き継ぎ元", "引き継ぎ先"
    )
    trail = _japanese_page(admin, reverse("sharing:audit"), "変更前", "変更後", "共有設定を変更")
    # Stored values read in the reader's language: permissions by label, on/off for options.
    assert "非公開（自分のみ）" in trail and "全体に公開（レコードのメールを全員と共有）" in trail
    assert "オフ" in trail and "オン" in trail


def test_forbidden_page_explains_in_japanese(ja_client: HttpClient) -> None:
    response = ja_client.get(reverse("member_list"))
    assert response.status_code == 403
    assert "このページを開けるのは組織の管理者だけです。" in response.content.decode()


def test_browser_language_applies_when_the_user_chose_none(team: Team) -> None:
    login = HttpClient(HTTP_ACCEPT_LANGUAGE="ja,en;q=0.5")
    _japanese_page(login, reverse("login"), "RecruitMailにログイン", "パスワード")
    english = HttpClient(HTTP_ACCEPT_LANGUAGE="en").get(reverse("login")).content.decode()
    assert "Sign in to RecruitMail" in english and '<html lang="en">' in english

    assert team.teammate.language == ""
    browser_ja = HttpClient(HTTP_ACCEPT_LANGUAGE="ja")
    browser_ja.force_login(team.teammate)
    _japanese_page(browser_ja, reverse("mail:inbox"), "受信トレイ")


def test_failed_sign_in_is_explained_in_japanese(team: Team, password: str) -> None:
    client = HttpClient(HTTP_ACCEPT_LANGUAGE="ja")
    response = client.post(
        reverse("login"), {"username": team.owner.email, "password": password + "x"}
    )
    assert "メールアドレスまたはパスワードが正しくありません。" in response.content.decode()


def test_choosing_japanese_confirms_in_japanese(team: Team, owner_client: HttpClient) -> None:
    response = owner_client.post(
        reverse("profile"),
        {"full_name": "Olivia Owner", "language": "ja", "time_zone": "Asia/Tokyo"},
        follow=True,
    )
    html = response.content.decode()
    assert "設定を保存しました。" in html and '<html lang="ja">' in html
    assert not _untranslated(html), _untranslated(html)
