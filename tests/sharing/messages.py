"""Stored messages for the visibility tests, built directly with the ORM (no POP3, no SMTP):
a ``Message`` row with its ``MessageAddress`` rows and ``MessageLink`` rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mailboxes.models import (
    AddressRole,
    Direction,
    Mailbox,
    Message,
    MessageAddress,
    MessageLink,
    MessageOrigin,
    Thread,
)
from mailboxes.search_index import message_search_index
from records.models import Record, User
from sharing.models import ExcludedDomain, MailboxSharing, Permission


def stored_message(
    *,
    owner: User,
    mailbox: Mailbox | None,
    origin: str = MessageOrigin.POP3,
    direction: str = Direction.INCOMING,
    subject: str = "Interview",
    addresses: Sequence[tuple[str, str]] = (),
    records: Iterable[Record] = (),
    thread: Thread | None = None,
) -> Message:
    """A message as the importer or the sender would leave it: ``addresses`` are
    ``(role, normalised address)`` pairs; each record in ``records`` gets a link."""
    sender = next((address for role, address in addresses if role == AddressRole.FROM), "")
    message = Message.objects.create(
        organization_id=owner.membership.organization_id,
        owner=owner,
        mailbox=mailbox,
        origin=origin,
        direction=direction,
        subject=subject,
        from_address=sender,
        thread=thread,
    )
    MessageAddress.objects.bulk_create(
        MessageAddress(
            message=message, role=role, address=address, domain=address.rpartition("@")[2]
        )
        for role, address in addresses
    )
    MessageLink.objects.bulk_create(
        MessageLink(message=message, record=record) for record in records
    )
    message_search_index(message_ids=[message.pk])
    return message


def sharing_set(
    mailbox: Mailbox, *, permission: str, excluded: Iterable[str] = ()
) -> MailboxSharing:
    """Give ``mailbox`` this permission and exactly these excluded domains."""
    sharing, _created = MailboxSharing.objects.get_or_create(mailbox=mailbox)
    sharing.permission = Permission(permission)
    sharing.save(update_fields=["permission"])
    sharing.excluded_domains.all().delete()
    ExcludedDomain.objects.bulk_create(ExcludedDomain(sharing=sharing, domain=d) for d in excluded)
    return sharing
