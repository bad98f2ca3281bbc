"""manage.py rotate_mail_credentials: every stored password moves to the newest key."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from mailboxes.credentials import CredentialUnreadable, decrypt_secret, encrypt_secret
from mailboxes.models import Mailbox, SystemSender
from tests.conftest import Team
from tests.mailboxes.factories import MailboxFactory

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
KEY_C = Fernet.generate_key().decode()


def _rotate(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("rotate_mail_credentials", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _passwords() -> dict[int, tuple[str, str, str]]:
    """Each mailbox's incoming password and outgoing user name and password, decrypted."""
    return {
        mailbox.pk: (mailbox.pop3_password(), *mailbox.smtp_credentials())
        for mailbox in Mailbox.objects.order_by("pk")
    }


@pytest.fixture
def old_key_data(team: Team, settings: Any) -> dict[str, Any]:
    """Five mailboxes and a system sender, every password under key A alone."""
    settings.FERNET_KEYS = [KEY_A]
    mailboxes = [
        MailboxFactory(owner=team.owner, password="owner-pop-パス"),
        MailboxFactory(owner=team.teammate, password="mate-pop"),
        MailboxFactory(owner=team.admin, password="admin-pop"),
        MailboxFactory(owner=team.owner, is_active=False, password="owner-old"),
        MailboxFactory(owner=team.outsider, password="outsider-pop"),
    ]
    separate = mailboxes[1]
    separate.smtp_same_credentials = False
    separate.smtp_username = "mate-smtp"
    separate.set_smtp_password("mate-smtp-secret")
    separate.save()
    sender = SystemSender(
        organization=team.organization,
        name="Sakura notifications",
        address="notify@sakura.example",
        smtp_host="127.0.0.1",
        smtp_username="notify",
    )
    sender.set_smtp_password("system-sender-secret")
    sender.save()
    return {"passwords": _passwords(), "sender": sender}


def test_rotation_moves_every_password_to_the_newest_key(
    old_key_data: dict[str, Any], settings: Any
) -> None:
    before = old_key_data["passwords"]
    settings.FERNET_KEYS = [KEY_B, KEY_A]

    out, err = _rotate("--batch-size", "2")  # three batches of mailboxes

    assert "mailbox passwords: 6 re-encrypted, 0 already under the newest key, 0 unreadable" in out
    assert "system sender passwords: 1 re-encrypted" in out
    assert err == ""
    # Key A is gone: everything still decrypts with B alone, to the same passwords.
    settings.FERNET_KEYS = [KEY_B]
    assert _passwords() == before
    sender = SystemSender.objects.get(pk=old_key_data["sender"].pk)
    assert sender.smtp_credentials() == ("notify", "system-sender-secret")


def test_rotation_is_idempotent(old_key_data: dict[str, Any], settings: Any) -> None:
    settings.FERNET_KEYS = [KEY_B, KEY_A]
    _rotate()
    tokens = list(Mailbox.objects.order_by("pk").values_list("pop3_password_token", flat=True))

    out, _ = _rotate()

    assert "mailbox passwords: 0 re-encrypted, 6 already under the newest key" in out
    assert "system sender passwords: 0 re-encrypted, 1 already under the newest key" in out
    # Nothing was rewritten the second time.
    assert (
        list(Mailbox.objects.order_by("pk").values_list("pop3_password_token", flat=True)) == tokens
    )


def test_an_unreadable_password_is_reported_by_id_and_left_alone(
    old_key_data: dict[str, Any], settings: Any, team: Team
) -> None:
    settings.FERNET_KEYS = [KEY_C]
    lost = MailboxFactory(owner=team.outsider, is_active=False, password="lost-under-key-c")
    lost_token = lost.pop3_password_token
    settings.FERNET_KEYS = [KEY_B, KEY_A]

    out = StringIO()
    err = StringIO()
    with pytest.raises(CommandError, match="1 stored passwords could not be decrypted"):
        call_command("rotate_mail_credentials", stdout=out, stderr=err)

    assert f"mailbox {lost.pk}: incoming password" in err.getvalue()
    assert lost_token not in out.getvalue() + err.getvalue()
    assert "lost-under-key-c" not in out.getvalue() + err.getvalue()
    assert "6 re-encrypted" in out.getvalue()  # the others were rotated all the same
    assert Mailbox.objects.get(pk=lost.pk).pop3_password_token == lost_token
    settings.FERNET_KEYS = [KEY_B]
    with pytest.raises(CredentialUnreadable):
        decrypt_secret(lost_token)
    settings.FERNET_KEYS = [KEY_C]
    assert decrypt_secret(lost_token) == "lost-under-key-c"


def test_an_empty_password_stays_empty(team: Team, settings: Any) -> None:
    settings.FERNET_KEYS = [KEY_A]
    mailbox = MailboxFactory(owner=team.owner)
    Mailbox.objects.filter(pk=mailbox.pk).update(
        smtp_password_token="", pop3_password_token=encrypt_secret("x")
    )
    settings.FERNET_KEYS = [KEY_B, KEY_A]
    out, _ = _rotate()
    assert "mailbox passwords: 1 re-encrypted" in out
    assert Mailbox.objects.get(pk=mailbox.pk).smtp_password_token == ""
