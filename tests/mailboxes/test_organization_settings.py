from __future__ import annotations

import pytest
from django.urls import reverse

from mailboxes.models import SystemSender
from tests.conftest import Team
from tests.peers.smtp import SmtpServer

pytestmark = pytest.mark.django_db


def sender_post(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "org-name": "Sakura Agency",
        "org-poll_interval_seconds": 120,
        "sender-name": "Sakura notifications",
        "sender-address": "Notify@Sakura.example",
        "sender-smtp_host": "127.0.0.1",
        "sender-smtp_port": 465,
        "sender-smtp_security": "starttls",
        "sender-smtp_username": "notify",
        "sender-password": "s3nder-SECRET",
        "sender-is_active": "on",
    }
    data.update(overrides)
    return data


def test_admin_sets_poll_interval_and_system_sender(team: Team) -> None:
    client = team.client_for(team.admin)
    response = client.post(reverse("organization_settings"), sender_post())
    assert response.status_code == 302
    team.organization.refresh_from_db()
    assert team.organization.poll_interval_seconds == 120
    sender = SystemSender.objects.get(organization=team.organization)
    assert sender.address == "notify@sakura.example"
    assert sender.smtp_credentials() == ("notify", "s3nder-SECRET")
    page = client.get(reverse("organization_settings")).content.decode()
    assert "s3nder-SECRET" not in page and sender.smtp_password_token not in page
    # Saving again without the password keeps it.
    client.post(reverse("organization_settings"), sender_post(**{"sender-password": ""}))
    sender.refresh_from_db()
    assert sender.smtp_credentials()[1] == "s3nder-SECRET"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("org-poll_interval_seconds", 5),
        ("org-poll_interval_seconds", "soon"),
        ("sender-smtp_port", 0),
        ("sender-smtp_host", "https://smtp.example.com"),
        ("sender-address", "nope"),
    ],
)
def test_bad_input_is_a_form_error(team: Team, field: str, value: object) -> None:
    response = team.client_for(team.admin).post(
        reverse("organization_settings"), sender_post(**{field: value})
    )
    assert response.status_code == 200
    assert "has-error" in response.content.decode()
    assert not SystemSender.objects.exists()


def test_only_admins(team: Team) -> None:
    assert team.client_for(team.owner).get(reverse("organization_settings")).status_code == 403
    assert team.client_for(team.owner).post(reverse("system_sender_test")).status_code == 403


def test_system_sender_connection_test(team: Team, smtp_server: SmtpServer, send_settings) -> None:  # type: ignore[no-untyped-def]
    send_settings.MAIL_CA_FILE = str(smtp_server.ca_file)
    client = team.client_for(team.admin)
    client.post(
        reverse("organization_settings"),
        sender_post(
            **{
                "sender-smtp_port": smtp_server.port,
                "sender-smtp_username": smtp_server.username,
                "sender-password": smtp_server.password,
            }
        ),
    )
    page = client.post(reverse("system_sender_test"), follow=True).content.decode()
    assert "flash-success" in page
