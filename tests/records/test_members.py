from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from records.models import Membership, Role, User
from tests.conftest import Team

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def test_sign_in_with_email_and_password(team: Team, client, password: str) -> None:  # type: ignore[no-untyped-def]
    bad = client.post(reverse("login"), {"username": team.owner.email, "password": "wrong"})
    assert "do not match" in bad.content.decode()
    good = client.post(reverse("login"), {"username": team.owner.email, "password": password})
    assert good.status_code == 302


def test_admin_adds_a_user_with_a_password(team: Team) -> None:
    response = team.client_for(team.admin).post(
        reverse("member_create"),
        {
            "email": "New.Hire@Sakura.example",
            "full_name": "New Hire",
            "role": Role.RECRUITER,
            "password": "a-long-enough-pass-42",
        },
    )
    assert response.status_code == 302
    member = Membership.objects.get(user__email="new.hire@sakura.example")
    assert member.organization == team.organization and member.role == Role.RECRUITER
    assert member.user.check_password("a-long-enough-pass-42")


def test_admin_invites_a_user_who_sets_a_password(team: Team, client) -> None:  # type: ignore[no-untyped-def]
    team.client_for(team.admin).post(
        reverse("member_create"),
        {"email": "invitee@sakura.example", "full_name": "Invitee", "role": Role.ADMIN},
    )
    user = User.objects.get(email="invitee@sakura.example")
    assert not user.has_usable_password()
    assert len(mail.outbox) == 1
    link = next(word for word in mail.outbox[0].body.split() if "/accounts/set-password/" in word)
    path = link.split("testserver", 1)[1]
    form_page = client.get(path, follow=True)
    assert form_page.context["validlink"]
    client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": "chosen-password-77", "new_password2": "chosen-password-77"},
    )
    user.refresh_from_db()
    assert user.check_password("chosen-password-77")


@pytest.mark.parametrize(
    ("post", "field"),
    [
        ({"email": "owner@sakura.example"}, "email"),
        ({"email": "not-an-email"}, "email"),
        ({"role": "superuser"}, "role"),
        ({"password": "123"}, "password"),
    ],
)
def test_member_form_errors(team: Team, post: dict, field: str) -> None:
    data = {"email": "x@sakura.example", "full_name": "X", "role": Role.RECRUITER, **post}
    response = team.client_for(team.admin).post(reverse("member_create"), data)
    assert response.status_code == 200
    assert field in response.context["form"].errors


def test_admin_changes_roles_and_deactivates(team: Team) -> None:
    client = team.client_for(team.admin)
    member = team.teammate.membership
    client.post(reverse("member_edit", args=[member.pk]), {"role": Role.ADMIN})
    member.refresh_from_db()
    assert member.role == Role.ADMIN
    client.post(reverse("member_toggle_active", args=[member.pk]))
    team.teammate.refresh_from_db()
    assert not team.teammate.is_active


def test_recruiters_cannot_manage_members(team: Team) -> None:
    client = team.client_for(team.owner)
    assert client.get(reverse("member_list")).status_code == 403
    assert (
        client.post(
            reverse("member_edit", args=[team.teammate.membership.pk]), {"role": Role.ADMIN}
        ).status_code
        == 403
    )
    assert team.teammate.membership.role == Role.RECRUITER


def test_other_organisations_members_are_404(team: Team) -> None:
    client = team.client_for(team.outsider)  # an admin, of another organisation
    for name in ("member_edit", "member_toggle_active"):
        assert (
            client.post(
                reverse(name, args=[team.owner.membership.pk]), {"role": Role.ADMIN}
            ).status_code
            == 404
        )
    assert team.owner.email not in client.get(reverse("member_list")).content.decode()


def test_create_organization_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIRST_ADMIN_PASSWORD", "a-strong-password-19")
    call_command(
        "create_organization",
        "Kyoto Talent",
        "--admin-email",
        "Boss@Kyoto.example",
        "--admin-name",
        "Boss",
        "--password-env",
        "FIRST_ADMIN_PASSWORD",
    )
    membership = Membership.objects.get(user__email="boss@kyoto.example")
    assert membership.role == Role.ADMIN and membership.organization.name == "Kyoto Talent"
    with pytest.raises(CommandError, match="already exists"):
        call_command(
            "create_organization",
            "Again",
            "--admin-email",
            "boss@kyoto.example",
            "--admin-name",
            "Boss",
            "--password-env",
            "FIRST_ADMIN_PASSWORD",
        )
    with pytest.raises(CommandError, match="admin-email"):
        call_command(
            "create_organization",
            "Bad",
            "--admin-email",
            "nope",
            "--admin-name",
            "Boss",
            "--password-env",
            "FIRST_ADMIN_PASSWORD",
        )


def test_demo_setup_is_idempotent(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("demo_setup")
    call_command("demo_setup")
    assert User.objects.filter(email__endswith="@demo.recruitmail.test").count() == 2
    assert "recruitmail-demo" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("POP3_TIMEOUT_SECONDS", "soon"),
        ("MAIL_MAX_MESSAGE_BYTES", "-5"),
        ("DEBUG", "perhaps"),
        ("DATABASE_URL", "nosuchdb://x"),
    ],
)
def test_a_bad_setting_fails_at_start_naming_the_variable(variable: str, value: str) -> None:
    env = {**os.environ, variable: value, "DEBUG": "true" if variable != "DEBUG" else value}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "recruitmail.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert variable in result.stderr


def test_production_needs_a_secret_key() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "recruitmail.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "SECRET_KEY" in result.stderr
