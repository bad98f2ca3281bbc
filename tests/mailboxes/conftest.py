from __future__ import annotations

from pathlib import Path
from typing import Any
from typing import Any as SettingsWrapper

import pytest

from mailboxes.models import Mailbox
from tests.conftest import Team
from tests.mailboxes.factories import MailboxFactory
from tests.peers.fixtures import Pop3Account


def mailbox_for(account: Pop3Account, owner, **fields) -> Mailbox:  # type: ignore[no-untyped-def]
    """A mailbox of ``owner`` on a Dovecot account, over implicit TLS."""
    return MailboxFactory(
        owner=owner,
        pop3_host=account.host,
        pop3_port=account.pop3s_port,
        pop3_security="ssl",
        pop3_username=account.user,
        password=account.password,
        **fields,
    )


@pytest.fixture
def dovecot_mailbox(
    team: Team, pop3_account: Pop3Account, mail_settings: SettingsWrapper
) -> Mailbox:
    return mailbox_for(pop3_account, team.owner, email_address="owner@sakura.example")


@pytest.fixture
def send_settings(settings: Any, tmp_path: Path) -> Any:
    """Loopback mail hosts allowed, a private mail store, short timeouts."""
    settings.MAIL_HOSTS_ALLOW_LOOPBACK = True
    settings.MEDIA_ROOT = str(tmp_path / "mailstore")
    settings.SMTP_TIMEOUT_SECONDS = 5
    return settings
