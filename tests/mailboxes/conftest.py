from __future__ import annotations

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
