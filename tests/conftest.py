"""Shared fixtures: every test gets an organisation with an owner, a teammate, an admin, and an
outsider from another organisation (healthchecks' test base)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client as HttpClient
from django.utils import translation

from records.models import Membership, Organization, Role, User
from tests.peers.dovecot import DovecotServer
from tests.records.factories import TEST_PASSWORD, MembershipFactory, OrganizationFactory

pytest_plugins = [
    "tests.peers.fixtures",
    "tests.peers.fault_fixtures",
    "tests.peers.celery_worker",
    "tests.peers.postgresql",
]


@dataclass
class Team:
    organization: Organization
    owner: User
    teammate: User
    admin: User
    outsider: User
    other_organization: Organization

    def client_for(self, user: User) -> HttpClient:
        client = HttpClient()
        client.force_login(user)
        return client


@pytest.fixture
def team(db: None) -> Team:
    organization = OrganizationFactory(name="Sakura Agency")
    other = OrganizationFactory(name="Other Agency")

    def member(email: str, name: str, role: str, org: Organization) -> User:
        membership: Membership = MembershipFactory(
            organization=org, role=role, user__email=email, user__full_name=name
        )
        return membership.user

    return Team(
        organization=organization,
        owner=member("owner@sakura.example", "Olivia Owner", Role.RECRUITER, organization),
        teammate=member("mate@sakura.example", "Tomo Mate", Role.RECRUITER, organization),
        admin=member("admin@sakura.example", "Ada Admin", Role.ADMIN, organization),
        outsider=member("out@other.example", "Oscar Outsider", Role.ADMIN, other),
        other_organization=other,
    )


@pytest.fixture
def owner_client(team: Team) -> HttpClient:
    return team.client_for(team.owner)


@pytest.fixture
def password() -> str:
    return TEST_PASSWORD


@pytest.fixture(autouse=True)
def _default_language_after_each_test() -> Iterator[None]:
    """A request in Japanese leaves "ja" active in the thread (LocaleMiddleware activates a
    language and never resets it): the next test starts from the default language again."""
    yield
    translation.deactivate()


@pytest.fixture(scope="session", autouse=True)
def _remove_test_broker_folder() -> Iterator[None]:
    """The filesystem broker folder of this test run (settings give each run its own) goes at the end."""
    yield
    folder = Path(settings.CELERY_BROKER_DIR)
    if folder.name.startswith("broker-test-"):
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def mail_settings(settings: Any, tmp_path: Path, dovecot: DovecotServer) -> Any:
    """Loopback mail hosts allowed, the test CA trusted, a private mail store."""
    settings.MAIL_HOSTS_ALLOW_LOOPBACK = True
    settings.MAIL_CA_FILE = str(dovecot.ca_file)
    settings.MEDIA_ROOT = str(tmp_path / "mailstore")
    settings.POP3_TIMEOUT_SECONDS = 5
    return settings


@pytest.fixture
def send_settings(settings: Any, tmp_path: Path) -> Any:
    """Loopback mail hosts allowed, a private mail store, short timeouts."""
    settings.MAIL_HOSTS_ALLOW_LOOPBACK = True
    settings.MEDIA_ROOT = str(tmp_path / "mailstore")
    settings.SMTP_TIMEOUT_SECONDS = 5
    return settings
