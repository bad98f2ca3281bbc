"""Writes to the recruiting database: organisations, members and records (HackSoft-style services)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TypeVar

from django.db import IntegrityError, transaction
from django.utils import timezone

from records.models import (
    Candidate,
    Client,
    Contact,
    Membership,
    Organization,
    Record,
    RecordAddress,
    Role,
    User,
)
from records.signals import record_addresses_added

logger = logging.getLogger(__name__)

RecordT = TypeVar("RecordT", Client, Contact, Candidate)


class AddressTaken(Exception):
    """An address is already a current address of another record of the same kind."""

    def __init__(self, address: str, record: Record) -> None:
        super().__init__(address)
        self.address = address
        self.record = record


def organization_create(
    *, name: str, admin_email: str, admin_name: str, admin_password: str
) -> Membership:
    """Create an organisation with its first admin."""
    with transaction.atomic():
        organization = Organization.objects.create(name=name)
        user = User.objects.create_user(admin_email, admin_password, full_name=admin_name)
        return Membership.objects.create(organization=organization, user=user, role=Role.ADMIN)


def member_add(
    *,
    organization: Organization,
    email: str,
    full_name: str,
    role: str,
    password: str | None = None,
) -> Membership:
    """Add a user to ``organization``. Without a password the user sets one through an invitation link."""
    with transaction.atomic():
        user = User.objects.create_user(email, password, full_name=full_name)
        if password is None:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        return Membership.objects.create(organization=organization, user=user, role=role)


def member_set_role(*, membership: Membership, role: str) -> Membership:
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


def member_set_active(*, membership: Membership, active: bool) -> Membership:
    """Deactivate or reactivate a member. A deactivated user cannot sign in and is not polled."""
    user = membership.user
    user.is_active = active
    user.save(update_fields=["is_active"])
    return membership


def record_save(
    *, record: RecordT, addresses: Iterable[str], organization: Organization
) -> RecordT:
    """Create or update ``record`` and make ``addresses`` (normalised) its current addresses.

    An address dropped from the list keeps its row with ``removed_at`` set, so mail linked through
    it stays linked. Raises AddressTaken (and writes nothing) if another record of the same kind
    already has one of the addresses.
    """
    wanted = list(dict.fromkeys(addresses))
    record.organization = organization
    with transaction.atomic():
        record.save()
        current = {a.address: a for a in RecordAddress.objects.filter(record=record).current()}
        now = timezone.now()
        for address, row in current.items():
            if address not in wanted:
                row.removed_at = now
                row.save(update_fields=["removed_at"])
        added = [address for address in wanted if address not in current]
        for address in added:
            _address_claim(record=record, address=address)
        if added:
            record_addresses_added.send(sender=type(record), record=record, addresses=added)
    return record


def _address_claim(*, record: Record, address: str) -> None:
    taken = (
        RecordAddress.objects.current()
        .filter(organization_id=record.organization_id, kind=record.kind, address=address)
        .exclude(record=record)
        .select_related("record")
        .first()
    )
    if taken is not None:
        raise AddressTaken(address, taken.record)
    try:
        # A savepoint: a concurrent claim of the same address trips the unique constraint
        # and must leave the outer transaction usable to roll back cleanly.
        with transaction.atomic():
            RecordAddress.objects.create(
                organization_id=record.organization_id,
                record=record,
                kind=record.kind,
                address=address,
            )
    except IntegrityError as exc:
        raise AddressTaken(address, record) from exc


def record_set_share_emails(*, record: Record, share: bool) -> Record:
    record.share_emails = share
    record.save(update_fields=["share_emails", "updated_at"])
    return record
