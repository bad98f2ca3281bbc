"""The message's HTML body: a sandboxed frame under a strict policy, remote images blocked
until asked for, cid: images through signed attachment URLs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client as HttpClient
from django.urls import reverse
from django.utils import timezone

from mailboxes.html import sanitize_html
from mailboxes.message_frame import cut_html, frame_document, frame_policy
from mailboxes.models import Mailbox, Message
from tests.conftest import Team
from tests.mailboxes.factories import MailboxFactory, MessageFactory, attachment_add


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "mailstore")
    return tmp_path


@pytest.fixture
def mailbox(team: Team) -> Mailbox:
    return MailboxFactory(owner=team.owner, email_address="owner@sakura.example")


def _received(team: Team, mailbox: Mailbox, **fields: Any) -> Message:
    return MessageFactory(owner=team.owner, mailbox=mailbox, **fields)


def test_frame_document_maps_cid_and_keeps_remote_images_blocked() -> None:
    stored = sanitize_html(
        '<img src="cid:Logo%40x" alt="a"><img src="cid:unknown"><img src="https://t.example/p.gif">'
        '<p title="<img src=&quot;&quot; data-remote-src=&quot;https://x&quot;>">text</p>'
    ).html
    urls = {"Logo@x": "/mail/attachments/1/image/t/"}
    blocked = frame_document(stored, cid_url=urls.get, show_remote_images=False)
    assert '<img src="/mail/attachments/1/image/t/" alt="a">' in blocked
    assert "cid:" not in blocked  # an unknown one is emptied: the browser tries nothing
    assert 'src="" data-remote-src="https://t.example/p.gif"' in blocked
    shown = frame_document(stored, cid_url=urls.get, show_remote_images=True)
    assert '<img src="https://t.example/p.gif">' in shown
    # Text that merely looks like the marker, inside an attribute value, is left alone.
    assert shown.count('src="https://') == 1


def test_unknown_or_quoted_cid_sources_are_emptied() -> None:
    """Found by the hostile corpus (51_html_cid_tricks): Chromium issued a request for each
    cid: URL left in the document, to no one, but a request all the same."""
    stored = sanitize_html(
        '<img src="cid:&quot; onerror=&quot;alert(1)" alt="q"><img src="cid:svg@x" alt="svg">'
    ).html
    document = frame_document(stored, cid_url=lambda content_id: None, show_remote_images=True)
    assert '<img src="" alt="q"><img src="" alt="svg">' in document


def test_cut_html_never_ends_inside_a_tag() -> None:
    html = "<p>" + "a" * 20 + '<img src="" data-remote-src="https://x.example/y.png">'
    head, cut = cut_html(html, 30)
    assert cut and head == "<p>" + "a" * 20
    assert cut_html("<p>short</p>", 30) == ("<p>short</p>", False)


def test_frame_policy() -> None:
    strict = frame_policy(hub_origin="https://hub.example", show_remote_images=False)
    assert strict == (
        "default-src 'none'; img-src cid: data: https://hub.example; style-src 'unsafe-inline'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; "
        "sandbox allow-popups allow-popups-to-escape-sandbox"
    )
    assert "img-src cid: data: https://hub.example https: http:;" in frame_policy(
        hub_origin="https://hub.example", show_remote_images=True
    )


@pytest.mark.django_db
def test_html_body_is_a_sandboxed_frame_under_a_strict_policy(team: Team, mailbox: Mailbox) -> None:
    stored = sanitize_html(
        '<p onclick="x()">Hi</p><script>alert(1)</script>'
        '<img src="https://tracker.example/p.gif?u=1&amp;v=2" alt="t">'
    )
    message = _received(team, mailbox, body_html=stored.html, has_remote_images=True)
    client = team.client_for(team.owner)
    page = client.get(reverse("mail:message", args=[message.pk]))
    html = page.content.decode()
    frame_url = reverse("mail:message_body", args=[message.pk])
    assert (
        f'<iframe class="mailframe" src="{frame_url}" sandbox="allow-popups allow-popups-to-escape-sandbox"'
        in html
    )
    assert "allow-scripts" not in html and "allow-same-origin" not in html
    assert page["X-Frame-Options"] == "DENY"

    frame = client.get(frame_url)
    policy = frame["Content-Security-Policy"]
    assert frame.status_code == 200 and frame["Content-Type"] == "text/html; charset=utf-8"
    assert frame["X-Frame-Options"] == "SAMEORIGIN" and frame["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in policy and "style-src 'unsafe-inline'" in policy
    assert "img-src cid: data: http://testserver;" in policy
    assert "https:" not in policy and "script-src" not in policy
    assert "sandbox allow-popups allow-popups-to-escape-sandbox" in policy
    assert frame["Referrer-Policy"] == "no-referrer" and "no-store" in frame["Cache-Control"]
    body = frame.content.decode()
    assert "<script" not in body and "onclick" not in body
    assert 'src="" data-remote-src="https://tracker.example/p.gif?u=1&amp;v=2"' in body


@pytest.mark.django_db
def test_show_images_swaps_remote_sources_for_that_response_only(
    team: Team, mailbox: Mailbox
) -> None:
    stored = sanitize_html('<img src="https://cdn.example/logo.png?a=1&amp;b=2" alt="logo">')
    message = _received(team, mailbox, body_html=stored.html, has_remote_images=True)
    client = team.client_for(team.owner)
    blocked = client.get(reverse("mail:message", args=[message.pk])).content.decode()
    assert "Show images" in blocked
    show_url = reverse("mail:message", args=[message.pk]) + "?images=1"
    assert f'href="{show_url}"' in blocked

    shown = client.get(show_url).content.decode()
    frame_url = reverse("mail:message_body", args=[message.pk]) + "?images=1"
    assert f'src="{frame_url}"' in shown and "Block them again" in shown
    frame = client.get(frame_url)
    assert "img-src cid: data: http://testserver https: http:" in frame["Content-Security-Policy"]
    assert (
        '<img src="https://cdn.example/logo.png?a=1&amp;b=2" alt="logo">' in frame.content.decode()
    )
    # The next plain load blocks them again.
    assert (
        "https:"
        not in client.get(reverse("mail:message_body", args=[message.pk]))[
            "Content-Security-Policy"
        ]
    )


@pytest.mark.django_db
def test_cid_images_point_to_a_signed_attachment_url(
    team: Team, mailbox: Mailbox, media: Path
) -> None:
    stored = sanitize_html('<p>Logo:</p><img src="cid:logo%40sakura" alt="logo">')
    message = _received(team, mailbox, body_html=stored.html)
    image = attachment_add(
        message,
        filename="logo.png",
        payload=b"\x89PNG fake",
        content_type="image/png",
        content_id="logo@sakura",
    )
    pdf = attachment_add(message, filename="cv.pdf", content_id="cv@sakura")
    body = (
        team.client_for(team.owner)
        .get(reverse("mail:message_body", args=[message.pk]))
        .content.decode()
    )
    prefix = f"/mail/attachments/{image.pk}/image/"
    assert prefix in body
    image_url = body[body.index(prefix) :].split('"', 1)[0]

    # The sandboxed frame may send no cookie: the token names the reader.
    anonymous = HttpClient().get(image_url)
    assert anonymous.status_code == 200 and anonymous.getvalue() == b"\x89PNG fake"
    assert anonymous["X-Content-Type-Options"] == "nosniff"
    token = image_url.rstrip("/").rsplit("/", 1)[1]
    forged = reverse("mail:attachment_inline", args=[pdf.pk, token])
    assert HttpClient().get(forged).status_code == 404
    assert HttpClient().get(image_url.replace(token, token[:-2] + "xx")).status_code == 404
    # Once the message is deleted, its images go too.
    Message.objects.filter(pk=message.pk).update(deleted_at=timezone.now())
    assert HttpClient().get(image_url).status_code == 404
