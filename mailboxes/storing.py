"""Commit parsed messages to the database: message, correspondents, attachments, links, thread, UID.

``messages_store`` writes a batch of messages in one transaction with a constant number of
queries, whatever the batch size, so the importer is not bound by per-message round trips. Each
message's rows are all written or none are: the caller retries a failed batch one message at a
time, so one bad message never blocks the others.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Case, DateTimeField, F, Value, When
from django.utils import timezone

from mailboxes.linking import LINKING_ROLES
from mailboxes.mailstore import blobs_store, files_durable, raw_store
from mailboxes.models import (
    AddressRole,
    Attachment,
    Direction,
    ImportState,
    Mailbox,
    Message,
    MessageAddress,
    MessageLink,
    MessageOrigin,
    ServerMessage,
    ServerMessageState,
    Thread,
)
from mailboxes.parsing import Correspondent, ParsedMessage
from mailboxes.search_index import parsed_message_document, search_entries_write
from records.models import Contact, RecordAddress, RecordKind

logger = logging.getLogger(__name__)

# A Date header more than this far in the future is a lie (or a broken clock): sort by arrival.
MAX_FUTURE_SKEW = timedelta(days=2)
# PostgreSQL cannot put a value over about 2,700 bytes (a third of a page) into a b-tree index,
# and Message.message_id is indexed. 998 characters of 3-byte UTF-8 (a hostile Message-ID)
# would make that message fail to commit on every poll and end in quarantine, never stored.
MAX_MESSAGE_ID_BYTES = 2000


@dataclass
class IncomingMessage:
    """One message fetched from a server, ready to store."""

    uid: str
    uid_hash: str
    raw: bytes
    digest: str
    parsed: ParsedMessage
    size: int
    existing_server_row: int | None = None  # a FAILED row to update instead of inserting
    raw_name: str | None = None  # already in the mail store (written while fetching)
    search_document: str | None = None  # parsed_message_document(parsed), if already built
    search_vector: bytes | None = None  # search_vector_binary(search_document), if built
    raw_durable: bool = False  # raw_name's file, and its folders, already fsynced


@dataclass
class StoreOutcome:
    imported: int = 0
    duplicates: int = 0
    message_pks: list[int] = field(default_factory=list)


def _correspondents(parsed: ParsedMessage) -> list[tuple[str, Correspondent]]:
    # The order mailboxes.search_index.parsed_message_document follows too.
    people: list[tuple[str, Correspondent]] = []
    if parsed.sender is not None:
        people.append((AddressRole.FROM, parsed.sender))
    for role, group in (
        (AddressRole.TO, parsed.to),
        (AddressRole.CC, parsed.cc),
        (AddressRole.BCC, parsed.bcc),
        (AddressRole.REPLY_TO, parsed.reply_to),
    ):
        people.extend((role, person) for person in group)
    return people


def _indexable_message_id(message_id: str) -> str:
    """``message_id`` cut to 998 characters and MAX_MESSAGE_ID_BYTES of UTF-8 (no real id is
    near either bound, so matching replies and copies is unaffected)."""
    message_id = message_id[:998]
    encoded = message_id.encode("utf-8", "surrogatepass")
    if len(encoded) <= MAX_MESSAGE_ID_BYTES:
        return message_id
    return encoded[:MAX_MESSAGE_ID_BYTES].decode("utf-8", "ignore")  # no half character


def _sort_time(parsed: ParsedMessage, now: datetime) -> datetime:
    if parsed.date is not None and parsed.date <= now + MAX_FUTURE_SKEW:
        return parsed.date
    return now


def _records_by_address(organization_id: int, addresses: set[str]) -> dict[str, set[int]]:
    """Map each address to the records it links to (current or past addresses; contacts' clients)."""
    if not addresses:
        return {}
    rows = list(
        RecordAddress.objects.filter(
            organization_id=organization_id, address__in=addresses
        ).values_list("address", "record_id", "kind")
    )
    contact_ids = {record_id for _, record_id, kind in rows if kind == RecordKind.CONTACT}
    companies = (
        dict(
            Contact.objects.filter(pk__in=contact_ids, company_id__isnull=False).values_list(
                "pk", "company_id"
            )
        )
        if contact_ids
        else {}
    )
    result: dict[str, set[int]] = {}
    for address, record_id, _ in rows:
        linked = result.setdefault(address, set())
        linked.add(record_id)
        if record_id in companies:
            linked.add(companies[record_id])
    return result


def messages_store(*, mailbox: Mailbox, batch: Sequence[IncomingMessage]) -> StoreOutcome:
    """Store ``batch`` (already fetched and parsed) in one transaction; return what happened.

    A message whose raw bytes the mailbox already holds, or that the hub itself sent from this
    mailbox (same Message-ID: the copy a provider like Gmail hands back over POP3), is recorded
    as a duplicate of that message instead of being imported again.
    """
    outcome = StoreOutcome()
    if not batch:
        return outcome
    now = timezone.now()
    organization_id = mailbox.organization_id
    with transaction.atomic():
        known_by_digest = dict(
            Message.objects.filter(
                mailbox=mailbox, raw_sha256__in={m.digest for m in batch}
            ).values_list("raw_sha256", "pk")
        )
        hub_ids = {m.parsed.message_id for m in batch if m.parsed.message_id}
        sent_here = (
            dict(
                Message.objects.filter(
                    mailbox=mailbox, origin=MessageOrigin.HUB, message_id__in=hub_ids
                ).values_list("message_id", "pk")
            )
            if hub_ids
            else {}
        )

        wanted_parents = {
            ref for m in batch for ref in [m.parsed.in_reply_to, *m.parsed.references] if ref
        }
        parents: dict[str, tuple[int, int | None]] = {}
        if wanted_parents:
            for pk, message_id, thread_id in Message.objects.filter(
                organization_id=organization_id, message_id__in=wanted_parents
            ).values_list("pk", "message_id", "thread_id"):
                parents.setdefault(message_id, (pk, thread_id))
        inherited: dict[int, set[int]] = {}
        if parents:
            for message_pk, record_id in MessageLink.objects.filter(
                message_id__in=[pk for pk, _ in parents.values()]
            ).values_list("message_id", "record_id"):
                inherited.setdefault(message_pk, set()).add(record_id)

        all_addresses = {
            person.address
            for m in batch
            for role, person in _correspondents(m.parsed)
            if role in LINKING_ROLES
        }
        records_by_address = _records_by_address(organization_id, all_addresses)

        to_create: list[tuple[IncomingMessage, Message]] = []
        server_rows: list[tuple[IncomingMessage, int, str]] = []  # (incoming, message pk, state)
        seen_digests: dict[str, IncomingMessage] = {}
        for incoming in batch:
            duplicate_of = known_by_digest.get(incoming.digest) or sent_here.get(
                incoming.parsed.message_id
            )
            if duplicate_of is None and incoming.digest in seen_digests:
                duplicate_of = -1  # resolved below, once the first copy has a pk
            if duplicate_of is not None:
                server_rows.append((incoming, duplicate_of, ServerMessageState.DUPLICATE))
                outcome.duplicates += 1
                continue
            seen_digests[incoming.digest] = incoming
            to_create.append((incoming, _build_message(mailbox, incoming, now)))

        # Threads: join the nearest known ancestor's (in the database or earlier in this batch).
        thread_of: dict[str, Thread] = {}
        new_threads: list[Thread] = []
        latest_in_existing: dict[int, datetime] = {}
        for incoming, message in to_create:
            thread = None
            for ref in [incoming.parsed.in_reply_to, *reversed(incoming.parsed.references)]:
                if ref in thread_of:
                    thread = thread_of[ref]
                elif ref in parents and parents[ref][1] is not None:
                    thread = Thread(pk=parents[ref][1])
                if thread is not None:
                    break
            if thread is None:
                thread = Thread(
                    organization_id=organization_id,
                    subject=message.subject,
                    last_message_at=message.sort_at,
                )
                new_threads.append(thread)
            elif thread.pk is not None:
                latest_in_existing[thread.pk] = max(
                    latest_in_existing.get(thread.pk, message.sort_at), message.sort_at
                )
            message.thread = thread
            if incoming.parsed.message_id:
                thread_of.setdefault(incoming.parsed.message_id, thread)
        Thread.objects.bulk_create(new_threads)
        if latest_in_existing:
            # One UPDATE for every existing thread the batch joins (not one per thread).
            latest = Case(
                *(When(pk=pk, then=Value(at)) for pk, at in latest_in_existing.items()),
                output_field=DateTimeField(),
            )
            Thread.objects.filter(
                pk__in=list(latest_in_existing), last_message_at__lt=latest
            ).update(last_message_at=latest)

        for incoming, message in to_create:
            message.raw.name = incoming.raw_name or raw_store(
                raw=incoming.raw, digest=incoming.digest
            )
        # The raw files (written early by the poll or its parser process, or just now) reach
        # the disk before the rows that name them can commit (blobs_store does the same).
        files_durable(
            names=[
                message.raw.name
                for incoming, message in to_create
                if not (incoming.raw_durable and incoming.raw_name == message.raw.name)
            ]
        )
        Message.objects.bulk_create([message for _, message in to_create])
        blobs = iter(
            blobs_store(
                payloads=[
                    part.payload
                    for incoming, _ in to_create
                    for part in incoming.parsed.attachments
                ]
            )
        )

        addresses: list[MessageAddress] = []
        links: list[MessageLink] = []
        attachments: list[Attachment] = []
        by_message_id: dict[str, int] = {}
        for incoming, message in to_create:
            outcome.imported += 1
            outcome.message_pks.append(message.pk)
            if incoming.parsed.message_id:
                by_message_id.setdefault(incoming.parsed.message_id, message.pk)
            record_ids: set[int] = set()
            for role, person in _correspondents(incoming.parsed):
                addresses.append(
                    MessageAddress(
                        message=message,
                        role=role,
                        name=person.name[:300],
                        address=person.address,
                        domain=person.address.rpartition("@")[2],
                    )
                )
                if role in LINKING_ROLES:
                    record_ids |= records_by_address.get(person.address, set())
            for ref in [incoming.parsed.in_reply_to, *incoming.parsed.references]:
                if ref in parents:
                    record_ids |= inherited.get(parents[ref][0], set())
            links.extend(MessageLink(message=message, record_id=rid) for rid in record_ids)
            for part in incoming.parsed.attachments:
                attachments.append(
                    Attachment(
                        message=message,
                        blob=next(blobs),
                        filename=part.filename[:255],
                        content_type=part.content_type[:255],
                        size=len(part.payload),
                        content_id=part.content_id[:255],
                        is_inline=part.is_inline,
                    )
                )
            server_rows.append((incoming, message.pk, ServerMessageState.IMPORTED))
        # Replies within the batch inherit the links their in-batch parents just got.
        links_by_message: dict[int, set[int]] = {}
        for link in links:
            links_by_message.setdefault(link.message.pk, set()).add(link.record_id)
        for incoming, message in to_create:
            for ref in [incoming.parsed.in_reply_to, *incoming.parsed.references]:
                parent_pk = by_message_id.get(ref)
                if parent_pk and parent_pk != message.pk:
                    for rid in links_by_message.get(parent_pk, set()) - links_by_message.get(
                        message.pk, set()
                    ):
                        links.append(MessageLink(message=message, record_id=rid))
                        links_by_message.setdefault(message.pk, set()).add(rid)
        MessageAddress.objects.bulk_create(addresses)
        MessageLink.objects.bulk_create(links, ignore_conflicts=True)
        Attachment.objects.bulk_create(attachments)
        # Search entries from what is in hand (no reading back of the bodies just written;
        # the parser process may have built the text already).
        search_entries_write(
            entries=[
                (
                    message.pk,
                    incoming.search_document
                    if incoming.search_document is not None
                    else parsed_message_document(incoming.parsed),
                    message.sort_at,
                )
                for incoming, message in to_create
            ],
            vectors={message.pk: incoming.search_vector for incoming, message in to_create},
            new_messages=True,
        )

        _record_server_rows(mailbox, server_rows, seen_digests, now)
    return outcome


def _build_message(mailbox: Mailbox, incoming: IncomingMessage, now: datetime) -> Message:
    parsed = incoming.parsed
    sender = parsed.sender
    outgoing = sender is not None and sender.address == mailbox.email_address
    return Message(
        organization_id=mailbox.organization_id,
        owner_id=mailbox.owner_id,
        mailbox=mailbox,
        origin=MessageOrigin.POP3,
        direction=Direction.OUTGOING if outgoing else Direction.INCOMING,
        import_state=ImportState.UNPARSED if parsed.unparsed else ImportState.PARSED,
        message_id=_indexable_message_id(parsed.message_id),
        in_reply_to=parsed.in_reply_to[:998],
        references=" ".join(parsed.references),
        subject=parsed.subject[:998],
        from_name=(sender.name if sender else "")[:300],
        from_address=(sender.address if sender else ""),
        sent_at=parsed.date,
        sort_at=_sort_time(parsed, now),
        snippet=parsed.snippet[:300],
        body_text=parsed.text_body,
        body_html=parsed.html_body,
        has_remote_images=parsed.has_remote_images,
        has_attachments=bool(parsed.attachments),
        defects=parsed.defects[:50],
        raw_sha256=incoming.digest,
        raw_size=len(incoming.raw),
        created_at=now,
    )


def _record_server_rows(
    mailbox: Mailbox,
    rows: list[tuple[IncomingMessage, int, str]],
    first_copies: dict[str, IncomingMessage],
    now: datetime,
) -> None:
    """Insert (or, for earlier failures and reappearing UIDs, update) the UID rows of the batch."""
    created_pk_by_digest: dict[str, int] = {}
    for incoming, message_pk, state in rows:
        if state == ServerMessageState.IMPORTED:
            created_pk_by_digest[incoming.digest] = message_pk
    inserts: list[ServerMessage] = []
    for incoming, message_pk, state in rows:
        if message_pk == -1:
            message_pk = created_pk_by_digest[incoming.digest]
        values = {
            "state": state,
            "message_id": message_pk,
            "size": incoming.size,
            "imported_at": now,
            "last_error": "",
            "deleted_from_server_at": None,
        }
        if incoming.existing_server_row is not None:
            ServerMessage.objects.filter(pk=incoming.existing_server_row).update(
                # A UID that had left the server and came back names a new message: its days
                # on the server (the after-N-days policy) count from now, not from the old
                # message's arrival, or it would be deleted at the next poll.
                first_seen_at=Case(
                    When(deleted_from_server_at__isnull=False, then=Value(now)),
                    default=F("first_seen_at"),
                ),
                **values,
            )
        else:
            inserts.append(
                ServerMessage(
                    mailbox=mailbox,
                    uid=incoming.uid,
                    uid_hash=incoming.uid_hash,
                    first_seen_at=now,
                    **values,
                )
            )
    ServerMessage.objects.bulk_create(inserts)
