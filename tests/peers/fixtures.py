"""Pytest fixtures that start real peers (Dovecot, aiosmtpd) on loopback.

Registered for the whole suite by ``tests/conftest.py`` (``pytest_plugins``).

- ``dovecot`` (session): one running :class:`DovecotServer` with the "valid" certificate.
  Shared, so a test never reuses someone else's user: take a ``pop3_account``.
- ``pop3_account`` (function): a fresh user with a random password on ``dovecot``, as a
  :class:`Pop3Account`. ``pop3_account_factory()`` makes more of them for one test.
- ``dovecot_factory`` (function): ``dovecot_factory(cert="expired", plain_pop3_stls=False)``
  starts a private server for this test and closes it afterwards.
- ``smtp_server`` (function): a running :class:`SmtpServer` with STARTTLS, a "valid"
  certificate and AUTH required: the login is ``smtp_server.username``, the password
  ``smtp_server.password``.
- ``smtp_factory`` (function): ``smtp_factory(security="implicit", refused_recipients={...})``
  starts one with any :class:`SmtpServer` keyword and stops it afterwards.

A missing Dovecot makes these fixtures error (the tests fail, never skip), naming
``scripts/install-test-peers.sh``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.peers.certs import CertKind
from tests.peers.dovecot import DovecotServer
from tests.peers.smtp import SmtpServer


@dataclass(frozen=True)
class Pop3Account:
    """One user on a running Dovecot, with what a POP3 client needs to reach it."""

    server: DovecotServer
    user: str
    password: str

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def pop3_port(self) -> int:
        """Plain POP3, STLS offered (unless the server was started without it)."""
        return self.server.pop3_port

    @property
    def pop3s_port(self) -> int:
        """POP3 over implicit TLS."""
        return self.server.pop3s_port

    @property
    def ca_file(self) -> Path:
        """The test CA's PEM: verify the server against it."""
        return self.server.ca_file

    def deliver(self, raw: bytes, *, mtime: float | None = None) -> str:
        """Put a message into this user's mailbox; see ``DovecotServer.deliver``."""
        return self.server.deliver(self.user, raw, mtime=mtime)

    def messages(self) -> list[bytes]:
        """The raw messages still on the server; see ``DovecotServer.messages``."""
        return self.server.messages(self.user)


Pop3AccountFactory = Callable[..., Pop3Account]


def make_pop3_account(server: DovecotServer, *, password: str | None = None) -> Pop3Account:
    """Create a user with a unique name (and a random password unless given) on ``server``."""
    user = f"user-{secrets.token_hex(6)}"
    account = Pop3Account(server, user, password or secrets.token_urlsafe(12))
    server.add_user(account.user, account.password)
    return account


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """The session's shared Dovecot (valid certificate, STLS on the plain port)."""
    with DovecotServer(tmp_path_factory.mktemp("dovecot")) as server:
        yield server


@pytest.fixture
def pop3_account_factory(dovecot: DovecotServer) -> Pop3AccountFactory:
    """``pop3_account_factory(password=None)`` -> a new :class:`Pop3Account` on ``dovecot``."""

    def factory(*, password: str | None = None) -> Pop3Account:
        return make_pop3_account(dovecot, password=password)

    return factory


@pytest.fixture
def pop3_account(pop3_account_factory: Pop3AccountFactory) -> Pop3Account:
    """A fresh user with an empty mailbox on the shared ``dovecot``."""
    return pop3_account_factory()


@pytest.fixture
def dovecot_factory(tmp_path: Path) -> Iterator[Callable[..., DovecotServer]]:
    """``dovecot_factory(cert="valid", plain_pop3_stls=True)`` -> a started private server."""
    servers: list[DovecotServer] = []

    def factory(*, cert: CertKind = "valid", plain_pop3_stls: bool = True) -> DovecotServer:
        server = DovecotServer(tmp_path, cert=cert, plain_pop3_stls=plain_pop3_stls)
        servers.append(server)
        return server.start()

    yield factory
    for server in servers:
        server.close()


@pytest.fixture
def smtp_factory(tmp_path: Path) -> Iterator[Callable[..., SmtpServer]]:
    """``smtp_factory(**SmtpServer keywords)`` -> a started server, stopped after the test."""
    servers: list[SmtpServer] = []

    def factory(**options: Any) -> SmtpServer:
        server = SmtpServer(tmp_path, **options)
        servers.append(server)
        return server.start()

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def smtp_server(smtp_factory: Callable[..., SmtpServer]) -> SmtpServer:
    """A started STARTTLS server that requires AUTH with its own random credentials."""
    return smtp_factory(
        security="starttls",
        username=f"sender-{secrets.token_hex(4)}@example.com",
        password=secrets.token_urlsafe(12),
    )
