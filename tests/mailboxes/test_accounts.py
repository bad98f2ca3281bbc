"""Mailbox accounts: the add/edit forms, passwords at rest, the one-active rule, tenancy."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from django.urls import reverse

from mailboxes.credentials import decrypt_secret
from mailboxes.models import Mailbox, MailboxStatus
from sharing.models import MailboxSharing, Permission
from tests.conftest import Team
from tests.mailboxes.factories import MAILBOX_PASSWORD, MailboxFactory

pytestmark = pytest.mark.django_db

POP_PASSWORD = "app-pass-9c4e-SECRET"
SMTP_PASSWORD = "smtp-only-71aa-SECRET"


def gmail_post(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "Gmail",
        "email_address": "Olivia.Owner@Gmail.com",
        "pop3_host": "pop.gmail.com",
        "pop3_port": 995,
        "pop3_security": "ssl",
        "pop3_username": "recent:olivia.owner@gmail.com",
        "pop3_password": POP_PASSWORD,
        "smtp_same_credentials": "on",
        "smtp_host": "",
        "smtp_port": "",
        "smtp_security": "ssl",
        "smtp_username": "",
        "smtp_password": "",
        "deletion_policy": "keep",
        "delete_after_days": "",
        "first_import_scope": "all",
        "first_import_since": "",
        "first_import_newest": "",
        "make_active": "on",
    }
    data.update(overrides)
    return data


def test_add_gmail_mailbox_prefills_outgoing_server(team: Team) -> None:
    client = team.client_for(team.owner)
    form_page = client.get(reverse("mailboxes:add"))
    assert "recent:" in form_page.content.decode()  # the Gmail note travels with the presets
    response = client.post(reverse("mailboxes:add"), gmail_post())
    mailbox = Mailbox.objects.get(owner=team.owner)
    assert response.status_code == 302
    assert (mailbox.email_address, mailbox.smtp_host, mailbox.smtp_port) == (
        "olivia.owner@gmail.com",
        "smtp.gmail.com",
        465,
    )
    assert mailbox.is_active and mailbox.status == MailboxStatus.NEW
    assert mailbox.smtp_credentials() == ("recent:olivia.owner@gmail.com", POP_PASSWORD)
    assert MailboxSharing.objects.get(mailbox=mailbox).permission == Permission.PRIVATE


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"pop3_port": 0}, "pop3_port", "1 to 65535"),
        ({"pop3_port": 70000}, "pop3_port", "1 to 65535"),
        ({"smtp_port": 65536, "smtp_host": "smtp.example.com"}, "smtp_port", "1 to 65535"),
        ({"pop3_host": ""}, "pop3_host", "incoming"),
        ({"pop3_host": "pop gmail com"}, "pop3_host", ""),
        ({"pop3_host": "https://pop.gmail.com/"}, "pop3_host", ""),
        ({"pop3_host": "pop.gmail.com:995"}, "pop3_host", ""),
        ({"email_address": "olivia at gmail"}, "email_address", ""),
        ({"email_address": "olivia@example.com", "smtp_host": ""}, "smtp_host", "outgoing"),
        (
            {"smtp_same_credentials": "", "smtp_username": "", "smtp_password": ""},
            "smtp_username",
            "outgoing",
        ),
        (
            {"smtp_same_credentials": "", "smtp_username": "o", "smtp_password": ""},
            "smtp_password",
            "outgoing",
        ),
        ({"deletion_policy": "after_days", "delete_after_days": ""}, "delete_after_days", "days"),
        ({"deletion_policy": "sometimes"}, "deletion_policy", "valid choice"),
        ({"first_import_scope": "since_date"}, "first_import_since", "date"),
        ({"first_import_scope": "newest", "first_import_newest": "0"}, "first_import_newest", ""),
        ({"pop3_password": ""}, "pop3_password", "required"),
    ],
)
def test_bad_input_is_a_form_error_and_keeps_typing(
    team: Team, overrides: dict, field: str, message: str
) -> None:
    response = team.client_for(team.owner).post(reverse("mailboxes:add"), gmail_post(**overrides))
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors, errors
    assert message.lower() in " ".join(errors[field]).lower()
    assert 'value="Gmail"' in response.content.decode()
    assert POP_PASSWORD not in response.content.decode()
    assert not Mailbox.objects.filter(owner=team.owner).exists()


def test_passwords_are_encrypted_at_rest(team: Team) -> None:
    client = team.client_for(team.owner)
    client.post(
        reverse("mailboxes:add"),
        gmail_post(smtp_same_credentials="", smtp_username="olivia", smtp_password=SMTP_PASSWORD),
    )
    mailbox = Mailbox.objects.get(owner=team.owner)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM mailboxes_mailbox WHERE id = %s", [mailbox.pk])
        stored_row = " ".join(str(value) for value in cursor.fetchone())
    assert POP_PASSWORD not in stored_row and SMTP_PASSWORD not in stored_row
    assert decrypt_secret(mailbox.pop3_password_token) == POP_PASSWORD
    assert mailbox.smtp_credentials() == ("olivia", SMTP_PASSWORD)


def test_passwords_never_rendered(team: Team) -> None:
    client = team.client_for(team.owner)
    client.post(
        reverse("mailboxes:add"),
        gmail_post(smtp_same_credentials="", smtp_username="olivia", smtp_password=SMTP_PASSWORD),
    )
    mailbox = Mailbox.objects.get(owner=team.owner)
    pages = [
        reverse("mailboxes:list"),
        reverse("mailboxes:detail", args=[mailbox.pk]),
        reverse("mailboxes:edit", args=[mailbox.pk]),
        reverse("mailboxes:incoming_password", args=[mailbox.pk]),
        reverse("mailboxes:outgoing_password", args=[mailbox.pk]),
        reverse("mailboxes:delete", args=[mailbox.pk]),
    ]
    for url in pages:
        body = client.get(url).content.decode()
        for secret in (
            POP_PASSWORD,
            SMTP_PASSWORD,
            mailbox.pop3_password_token,
            mailbox.smtp_password_token,
        ):
            assert secret not in body, url


def test_edit_without_retyping_password_keeps_it(team: Team) -> None:
    mailbox = MailboxFactory(owner=team.owner)
    client = team.client_for(team.owner)
    form = client.get(reverse("mailboxes:edit", args=[mailbox.pk])).context["form"]
    data = {name: value for name, value in form.initial.items() if value is not None}
    data.update(name="Renamed", smtp_same_credentials="on")
    response = client.post(reverse("mailboxes:edit", args=[mailbox.pk]), data)
    assert response.status_code == 302, response.context["form"].errors
    mailbox.refresh_from_db()
    assert mailbox.name == "Renamed"
    assert mailbox.pop3_password() == MAILBOX_PASSWORD


def test_change_incoming_password_resumes_a_mailbox_paused_for_auth(team: Team) -> None:
    mailbox = MailboxFactory(owner=team.owner, status=MailboxStatus.AUTH_FAILED)
    client = team.client_for(team.owner)
    url = reverse("mailboxes:incoming_password", args=[mailbox.pk])
    mismatch = client.post(url, {"password": "new-one-1", "confirm": "new-one-2"})
    assert "differ" in mismatch.content.decode()
    response = client.post(url, {"password": "new-one-1", "confirm": "new-one-1"})
    assert response.status_code == 302
    mailbox.refresh_from_db()
    assert mailbox.pop3_password() == "new-one-1"
    assert mailbox.status == MailboxStatus.NEW


def test_change_outgoing_password_separates_credentials(team: Team) -> None:
    mailbox = MailboxFactory(owner=team.owner)
    url = reverse("mailboxes:outgoing_password", args=[mailbox.pk])
    team.client_for(team.owner).post(url, {"password": "smtp-new", "confirm": "smtp-new"})
    mailbox.refresh_from_db()
    assert mailbox.smtp_credentials() == (mailbox.pop3_username, "smtp-new")
    assert mailbox.pop3_password() == MAILBOX_PASSWORD


def test_only_one_active_mailbox_per_user_at_the_database_level(team: Team) -> None:
    MailboxFactory(owner=team.owner, is_active=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        MailboxFactory(owner=team.owner, is_active=True, name="Second")
    # Inactive ones are fine, and so is another user's active one.
    MailboxFactory(owner=team.owner, is_active=False, name="Spare")
    MailboxFactory(owner=team.teammate, is_active=True)


def test_switching_the_active_mailbox(team: Team) -> None:
    first = MailboxFactory(owner=team.owner, is_active=True)
    second = MailboxFactory(owner=team.owner, is_active=False, name="Second")
    response = team.client_for(team.owner).post(reverse("mailboxes:activate", args=[second.pk]))
    assert response.status_code == 302
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.is_active, second.is_active) == (False, True)


def test_adding_a_second_mailbox_without_make_active_keeps_the_first(team: Team) -> None:
    first = MailboxFactory(owner=team.owner, is_active=True)
    team.client_for(team.owner).post(reverse("mailboxes:add"), gmail_post(make_active=""))
    first.refresh_from_db()
    assert first.is_active
    assert Mailbox.objects.filter(owner=team.owner, is_active=False).count() == 1


def test_accept_self_signed_is_for_admins_only(team: Team) -> None:
    team.client_for(team.owner).post(reverse("mailboxes:add"), gmail_post(accept_self_signed="on"))
    assert Mailbox.objects.get(owner=team.owner).accept_self_signed is False
    team.client_for(team.admin).post(reverse("mailboxes:add"), gmail_post(accept_self_signed="on"))
    assert Mailbox.objects.get(owner=team.admin).accept_self_signed is True


@pytest.mark.parametrize("intruder", ["teammate", "admin", "outsider"])
def test_someone_elses_mailbox_is_404(team: Team, intruder: str) -> None:
    mailbox = MailboxFactory(owner=team.owner)
    client = team.client_for(getattr(team, intruder))
    for name in ("detail", "edit", "incoming_password", "outgoing_password", "delete"):
        assert client.get(reverse(f"mailboxes:{name}", args=[mailbox.pk])).status_code == 404
    for name in ("activate", "delete", "incoming_password"):
        assert (
            client.post(
                reverse(f"mailboxes:{name}", args=[mailbox.pk]), {"password": "x", "confirm": "x"}
            ).status_code
            == 404
        )
    mailbox.refresh_from_db()
    assert mailbox.pop3_password() == MAILBOX_PASSWORD
    assert (
        mailbox.name not in client.get(reverse("mailboxes:list")).content.decode()
        or intruder == "owner"
    )


@pytest.mark.django_db(transaction=True)
def test_test_connection_reports_in_plain_words(team: Team, pop3_account, mail_settings) -> None:  # type: ignore[no-untyped-def]
    from tests.mailboxes.conftest import mailbox_for

    mailbox = mailbox_for(pop3_account, team.owner)
    client = team.client_for(team.owner)
    ok = client.post(reverse("mailboxes:test_connection", args=[mailbox.pk]), follow=True)
    assert ok.status_code == 200
    page = ok.content.decode()
    assert "flash-success" in page
    mailbox.set_pop3_password("definitely-wrong")
    mailbox.save()
    bad = client.post(
        reverse("mailboxes:test_connection", args=[mailbox.pk]), follow=True
    ).content.decode()
    assert "flash-error" in bad and "password" in bad.lower()
    assert "definitely-wrong" not in bad and "-ERR" not in bad


def test_fetch_now_refuses_while_paused_for_a_rejected_password(team: Team) -> None:
    mailbox = MailboxFactory(owner=team.owner, status=MailboxStatus.AUTH_FAILED)
    page = team.client_for(team.owner).post(
        reverse("mailboxes:fetch_now", args=[mailbox.pk]), follow=True
    )
    assert "Change the incoming password first" in page.content.decode()


def test_quarantine_is_shown_and_retried(team: Team) -> None:
    from mailboxes.models import ServerMessage, ServerMessageState

    mailbox = MailboxFactory(owner=team.owner)
    row = ServerMessage.objects.create(
        mailbox=mailbox,
        uid="u1",
        uid_hash="h1",
        state=ServerMessageState.QUARANTINED,
        failures=3,
        last_error="the message could not be stored",
    )
    foreign = MailboxFactory(owner=team.teammate)
    other_row = ServerMessage.objects.create(
        mailbox=foreign, uid="u2", uid_hash="h2", state=ServerMessageState.QUARANTINED, failures=3
    )
    client = team.client_for(team.owner)
    assert (
        "could not be stored"
        in client.get(reverse("mailboxes:detail", args=[mailbox.pk])).content.decode()
    )
    # A tampered post naming another user's row changes nothing there.
    client.post(
        reverse("mailboxes:quarantine_retry", args=[mailbox.pk]),
        {"server_message": [row.pk, other_row.pk, "junk"]},
    )
    row.refresh_from_db()
    other_row.refresh_from_db()
    assert (row.state, row.failures) == (ServerMessageState.FAILED, 0)
    assert other_row.state == ServerMessageState.QUARANTINED


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example"])
def test_switching_mailbox_never_redirects_off_site(team: Team, target: str) -> None:
    mailbox = MailboxFactory(owner=team.owner, is_active=False, name="Spare")
    response = team.client_for(team.owner).post(
        reverse("mailboxes:activate", args=[mailbox.pk]), {"next": target}
    )
    assert response["Location"] == reverse("mailboxes:list")
    ok = team.client_for(team.owner).post(
        reverse("mailboxes:activate", args=[mailbox.pk]), {"next": "/mail/inbox/"}
    )
    assert ok["Location"] == "/mail/inbox/"
