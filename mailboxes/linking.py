"""Which records a message concerns, and threads.

A message is linked to every candidate, contact and client with an address (current or past) in
its From, To or Cc, never from display names, Reply-To or bodies; a client is linked also
through its contacts. A reply inherits the links of the messages it answers (In-Reply-To and
References, which also find mail the hub itself sent, by its Message-ID).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.dispatch import receiver

from mailboxes.models import AddressRole, Message, MessageAddress, MessageLink, Thread
from records.models import Contact, Record, RecordAddress, RecordKind
from records.signals import record_addresses_added

LINKING_ROLES = (AddressRole.FROM, AddressRole.TO, AddressRole.CC)


def records_for_addresses(*, organization_id: int, addresses: Iterable[str]) -> set[int]:
    """Ids of the records with one of ``addresses``, plus the clients of matched contacts."""
    addresses = list(set(addresses))
    if not addresses:
        return set()
    matched = list(
        RecordAddress.objects.filter(organization_id=organization_id, address__in=addresses)
        .values_list("record_id", "kind")
        .distinct()
    )
    record_ids = {record_id for record_id, _ in matched}
    contact_ids = [record_id for record_id, kind in matched if kind == RecordKind.CONTACT]
    if contact_ids:
        record_ids.update(
            Contact.objects.filter(pk__in=contact_ids, company_id__isnull=False).values_list(
                "company_id", flat=True
            )
        )
    return record_ids


def thread_parents(*, organization_id: int, message_ids: Iterable[str]) -> list[dict[str, Any]]:
    """The organisation's messages whose Message-ID is one of ``message_ids`` (a reply's ancestors)."""
    wanted = [mid for mid in dict.fromkeys(message_ids) if mid]
    if not wanted:
        return []
    return list(
        Message.objects.filter(organization_id=organization_id, message_id__in=wanted[-50:])
        .order_by("sort_at")
        .values("pk", "thread_id")
    )


def thread_for(
    *, organization_id: int, parents: list[dict[str, Any]], subject: str, sort_at: Any
) -> Thread:
    """The thread a new message joins: its nearest known ancestor's, else a new one."""
    thread_ids = [parent["thread_id"] for parent in parents if parent["thread_id"]]
    if thread_ids:
        thread = Thread.objects.filter(pk=thread_ids[-1]).first()
        if thread is not None:
            if sort_at > thread.last_message_at:
                Thread.objects.filter(pk=thread.pk).update(last_message_at=sort_at)
            return thread
    return Thread.objects.create(
        organization_id=organization_id, subject=subject[:998], last_message_at=sort_at
    )


def inherited_records(*, parent_message_pks: Iterable[int]) -> set[int]:
    pks = list(parent_message_pks)
    if not pks:
        return set()
    return set(MessageLink.objects.filter(message_id__in=pks).values_list("record_id", flat=True))


def message_link(*, message: Message, record_ids: Iterable[int]) -> int:
    """Link ``message`` to the records (idempotent); return how many links were asked for."""
    links = [MessageLink(message=message, record_id=record_id) for record_id in set(record_ids)]
    MessageLink.objects.bulk_create(links, ignore_conflicts=True)
    return len(links)


def link_existing_mail(*, record: Record, addresses: Iterable[str]) -> int:
    """Link the organisation's existing mail of ``addresses`` to ``record`` (and a contact's client)."""
    message_ids = list(
        MessageAddress.objects.filter(
            message__organization_id=record.organization_id,
            address__in=list(addresses),
            role__in=LINKING_ROLES,
        )
        .values_list("message_id", flat=True)
        .distinct()
    )
    record_ids = [record.pk]
    if record.kind == RecordKind.CONTACT:
        company_id = (
            Contact.objects.filter(pk=record.pk).values_list("company_id", flat=True).first()
        )
        if company_id:
            record_ids.append(company_id)
    links = [
        MessageLink(message_id=message_id, record_id=record_id)
        for message_id in message_ids
        for record_id in record_ids
    ]
    MessageLink.objects.bulk_create(links, ignore_conflicts=True, batch_size=1000)
    return len(message_ids)


@receiver(record_addresses_added)
def _on_record_addresses_added(
    sender: type, record: Record, addresses: list[str], **kwargs: Any
) -> None:
    # Runs inside the transaction that added the addresses: both commit or neither does.
    assert transaction.get_connection().in_atomic_block
    link_existing_mail(record=record, addresses=addresses)
