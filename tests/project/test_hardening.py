"""Production hardening of the web app: the Content-Security-Policy of every page (and the mail
frame's own), no inline script or style anywhere, static files through WhiteNoise, sign-in
throttling, and idle sessions signed out."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.contrib.sessions.models import Session
from django.test import Client as HttpClient
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from mailboxes.html import sanitize_html
from mailboxes.message_frame import frame_policy
from recruitmail.session_idle import LAST_ACTIVITY_KEY
from recruitmail.signin_throttle import client_ip_address
from tests.conftest import Team
from tests.mailboxes.factories import MailboxFactory, MessageFactory
from tests.records.factories import CandidateFactory

ROOT = Path(__file__).resolve().parents[2]

APP_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
    "base-uri": "'none'",
    "object-src": "'none'",
}


def _directives(header: str) -> dict[str, str]:
    directives = {}
    for part in header.split(";"):
        name, _, value = part.strip().partition(" ")
        if name:
            directives[name] = value.strip()
    return directives


class _InlineCodeFinder(HTMLParser):
    """Collects what a strict policy (no 'unsafe-inline') would block: inline scripts, event
    handler attributes, style attributes and elements, javascript: URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        # A JSON data block (json_script) is not run, so the policy does not apply to it.
        is_data = (names.get("type") or "").lower() == "application/json"
        if tag == "script" and not names.get("src") and not is_data:
            self.found.append("<script> without src")
        if tag == "style":
            self.found.append("<style> element")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"{name}= handler on <{tag}>")
            if name == "style":
                self.found.append(f"style= on <{tag}>")
            if value and value.strip().lower().startswith("javascript:"):
                self.found.append(f"javascript: URL in {name}= on <{tag}>")


def _inline_code(html: str) -> list[str]:
    finder = _InlineCodeFinder()
    finder.feed(html)
    return finder.found


@pytest.fixture
def pages(team: Team) -> dict[str, str]:
    mailbox = MailboxFactory(owner=team.owner, email_address="owner@sakura.example")
    candidate = CandidateFactory(
        organization=team.organization, owner=team.owner, addresses=["taro@cand.example"]
    )
    stored = sanitize_html("<p>Hello <b>there</b></p>")
    message = MessageFactory(
        owner=team.owner, mailbox=mailbox, body_html=stored.html, records=[candidate]
    )
    return {
        "inbox": reverse("mail:inbox"),
        "record page": reverse("records:candidate_detail", args=[candidate.pk]),
        "message page": reverse("mail:message", args=[message.pk]),
        "mail settings": reverse("mailboxes:detail", args=[mailbox.pk]),
        "sharing settings": reverse("sharing:mailbox", args=[mailbox.pk]),
        "compose": reverse("mail:compose"),
        "new mailbox": reverse("mailboxes:add"),
        "frame": reverse("mail:message_body", args=[message.pk]),
    }


@pytest.mark.django_db
def test_every_main_page_carries_the_policy_and_no_inline_code(
    team: Team, pages: dict[str, str]
) -> None:
    sign_in = HttpClient().get(reverse("login"))
    assert sign_in.status_code == 200
    responses = {"sign-in": sign_in}
    client = team.client_for(team.owner)
    for name, url in pages.items():
        if name != "frame":
            responses[name] = client.get(url)
    for name, response in responses.items():
        assert response.status_code == 200, name
        assert _directives(response["Content-Security-Policy"]) == APP_POLICY, name
        assert response["X-Frame-Options"] == "DENY", name
        assert _inline_code(response.content.decode()) == [], name


@pytest.mark.django_db
def test_the_mail_frame_keeps_its_own_policy_and_only_it_may_be_framed_by_the_hub(
    team: Team, pages: dict[str, str]
) -> None:
    frame = team.client_for(team.owner).get(pages["frame"])
    assert frame.status_code == 200
    policy = frame["Content-Security-Policy"]
    # Exactly the frame's own policy: django-csp did not replace or merge into it.
    assert policy == frame_policy(hub_origin="http://testserver", show_remote_images=False)
    directives = _directives(policy)
    assert directives["default-src"] == "'none'" and "script-src" not in directives
    assert directives["frame-ancestors"] == "'self'"
    assert frame["X-Frame-Options"] == "SAMEORIGIN"


def test_no_template_has_inline_script_or_style() -> None:
    offenders = {}
    for template in sorted((ROOT / "templates").rglob("*.html")):
        # Template tags and variables are not HTML: a placeholder stands for each.
        markup = re.sub(r"{%.*?%}|{{.*?}}", "T", template.read_text(), flags=re.DOTALL)
        found = _inline_code(markup)
        if found:
            offenders[str(template.relative_to(ROOT))] = found
    assert offenders == {}


@pytest.mark.django_db
def test_static_files_are_served_by_whitenoise(client: HttpClient) -> None:
    response = client.get("/static/css/app.css")
    assert response.status_code == 200
    assert type(response).__module__.startswith("whitenoise")
    assert b"body" in b"".join(response.streaming_content)


def test_production_collects_compressed_static_files_with_hashed_names(tmp_path: Path) -> None:
    test_only = ("DEBUG", "DATABASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE", "STATIC_ROOT")
    env = {key: value for key, value in os.environ.items() if key not in test_only}
    env.update(
        DJANGO_SETTINGS_MODULE="recruitmail.settings",
        SECRET_KEY="a-long-random-production-secret-key-" + "x" * 40,
        FERNET_KEYS="Lk0x0s3Qd9gIWQpk3cS0u8Eo7JmK4sm3nQwl8mrhXnY=",
        RECRUITMAIL_DATA_DIR=str(tmp_path / "data"),
        STATIC_ROOT=str(tmp_path / "static"),
    )
    collect = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert collect.returncode == 0, collect.stdout + collect.stderr
    assert (tmp_path / "static" / "staticfiles.json").exists()
    hashed = list((tmp_path / "static" / "css").glob("app.*.css"))
    assert hashed and (hashed[0].parent / (hashed[0].name + ".gz")).exists()
    url = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from django.templatetags.static import static; print(static('css/app.css'))",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert url.stdout.strip().splitlines()[-1] == f"/static/css/{hashed[0].name}", url.stderr


# Sign-in throttling -----------------------------------------------------------------------


def _sign_in(client: HttpClient, email: str, password: str, address: str = "127.0.0.1"):  # type: ignore[no-untyped-def]
    return client.post(
        reverse("login"), {"username": email, "password": password}, REMOTE_ADDR=address
    )


def _signed_in(client: HttpClient) -> bool:
    return "_auth_user_id" in client.session


def _fail_until_the_last_allowed(client: HttpClient, email: str, failures: int) -> None:
    for attempt in range(1, failures):
        response = _sign_in(client, email, f"wrong-{attempt}")
        assert response.status_code == 200
        assert "do not match" in response.content.decode()


def _lock_out(client: HttpClient, email: str, failures: int) -> None:
    _fail_until_the_last_allowed(client, email, failures)
    assert _sign_in(client, email, "wrong-last").status_code == 429


@pytest.mark.django_db
def test_the_nth_wrong_password_locks_out_and_says_when_to_try_again(
    team: Team, settings, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    client = HttpClient()
    _fail_until_the_last_allowed(client, team.owner.email, settings.AUTH_LOCKOUT_FAILURES)
    with caplog.at_level(logging.WARNING, logger="axes"):
        response = _sign_in(client, team.owner.email, "wrong-again")
    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many failed sign-in attempts" in page
    assert "please try again in 15 minutes" in page
    assert 895 <= int(response["Retry-After"]) <= 900
    assert _directives(response["Content-Security-Policy"]) == APP_POLICY
    assert not _signed_in(client)
    # A line for the operator naming the address and the client; never the password.
    locked = [r.getMessage() for r in caplog.records if "Locking out" in r.getMessage()]
    assert len(locked) == 1
    assert team.owner.email in locked[0] and "127.0.0.1" in locked[0]
    assert "wrong-again" not in caplog.text


@pytest.mark.django_db
def test_the_right_password_during_the_lock_is_refused_too(
    team: Team, password: str, settings
) -> None:  # type: ignore[no-untyped-def]
    client = HttpClient()
    _lock_out(client, team.owner.email, settings.AUTH_LOCKOUT_FAILURES)
    # Changing the case of the address does not start a fresh count.
    response = _sign_in(client, team.owner.email.upper(), password)
    assert response.status_code == 429 and not _signed_in(client)
    response = _sign_in(client, team.owner.email, password)
    assert response.status_code == 429 and not _signed_in(client)
    assert "Too many failed sign-in attempts" in response.content.decode()


@pytest.mark.django_db
def test_the_lock_ends_after_the_period(team: Team, password: str, settings) -> None:  # type: ignore[no-untyped-def]
    client = HttpClient()
    _lock_out(client, team.owner.email, settings.AUTH_LOCKOUT_FAILURES)
    assert _sign_in(client, team.owner.email, password).status_code == 429
    # The period passes (the failures' times move back instead of the clock moving on).
    AccessAttempt.objects.update(
        attempt_time=timezone.now() - timedelta(seconds=settings.AUTH_LOCKOUT_SECONDS + 1)
    )
    response = _sign_in(client, team.owner.email, password)
    assert response.status_code == 302 and response["Location"] == reverse("home")
    assert _signed_in(client)
    # A successful sign-in starts the count afresh.
    assert not AccessAttempt.objects.filter(username=team.owner.email).exists()


@pytest.mark.django_db
def test_other_users_and_other_addresses_are_unaffected(
    team: Team, password: str, settings
) -> None:  # type: ignore[no-untyped-def]
    _lock_out(HttpClient(), team.owner.email, settings.AUTH_LOCKOUT_FAILURES)
    colleague = HttpClient()
    assert _sign_in(colleague, team.teammate.email, password).status_code == 302
    assert _signed_in(colleague)
    elsewhere = HttpClient()
    assert _sign_in(elsewhere, team.owner.email, password, address="192.0.2.7").status_code == 302
    assert _signed_in(elsewhere)


def test_client_address_from_forwarded_for_only_when_configured(settings) -> None:  # type: ignore[no-untyped-def]
    request = RequestFactory().post(
        "/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="203.0.113.9, 198.51.100.4"
    )
    settings.CLIENT_IP_FROM_FORWARDED_FOR = False
    assert client_ip_address(request) == "10.0.0.5"
    settings.CLIENT_IP_FROM_FORWARDED_FOR = True
    # The last entry is the one the proxy appended; the ones before it are the client's say.
    assert client_ip_address(request) == "198.51.100.4"
    request.META["HTTP_X_FORWARDED_FOR"] = "not-an-address"
    assert client_ip_address(request) == "10.0.0.5"


# Sessions ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_idle_session_is_signed_out_and_sent_to_sign_in(team: Team, settings) -> None:  # type: ignore[no-untyped-def]
    client = team.client_for(team.owner)
    inbox = reverse("mail:inbox")
    assert client.get(inbox).status_code == 200
    session = client.session
    assert isinstance(session[LAST_ACTIVITY_KEY], int)
    # Used a little while ago: still signed in.
    session[LAST_ACTIVITY_KEY] = int(time.time()) - settings.SESSION_IDLE_SECONDS + 120
    session.save()
    assert client.get(inbox).status_code == 200
    # Unused for longer than the idle limit: signed out, and the sign-in page says why.
    session = client.session
    session[LAST_ACTIVITY_KEY] = int(time.time()) - settings.SESSION_IDLE_SECONDS - 1
    session.save()
    response = client.get(inbox)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert not _signed_in(client)
    page = client.get(response["Location"]).content.decode()
    assert "signed out after a time without activity" in page


@pytest.mark.django_db
def test_a_session_past_its_age_is_sent_to_sign_in(team: Team) -> None:
    client = team.client_for(team.owner)
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    response = client.get(reverse("mail:inbox"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
