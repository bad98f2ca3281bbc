"""Which messages a poll fetches: new UIDs, the first import's scope, too-large placeholders."""

from __future__ import annotations

from datetime import datetime
from email.parser import BytesHeaderParser
from email.utils import parsedate_to_datetime

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _

from mailboxes.models import (
    FirstImportScope,
    ImportState,
    Message,
    MessageOrigin,
    ServerMessage,
    ServerMessageState,
    uid_digest,
)
from mailboxes.poll_session import SETTLED_STATES, PollSession, WantedMessage
from mailboxes.pop3_errors import Pop3Error
from mailboxes.search_index import message_search_index
from mailboxes.server_state import KnownUid


def plan_fetch(
    session: PollSession,
    sizes: dict[int, int],
    uids: dict[int, str] | None,
    known: dict[str, KnownUid],
) -> list[WantedMessage]:
    """Which messages to fetch, oldest first; records out-of-scope and too-large ones as known."""
    mailbox = session.mailbox
    if uids is None:
        # No UIDL: every message is fetched and identified by a hash of its bytes.
        return [WantedMessage(number=n, uid=None, size=sizes[n]) for n in sorted(sizes)]
    counts: dict[str, int] = {}
    for listed in uids.values():
        counts[listed] = counts.get(listed, 0) + 1
    wanted: list[WantedMessage] = []
    for number in sorted(sizes):
        uid = uids.get(number)
        if uid is None or counts[uid] > 1:
            # A UID listed twice (a broken server) identifies nothing: fall back to content.
            wanted.append(WantedMessage(number=number, uid=None, size=sizes[number]))
            continue
        row = known.get(uid_digest(uid))
        if row is not None and row.state in SETTLED_STATES and row.deleted_from_server_at is None:
            continue
        wanted.append(WantedMessage(number=number, uid=uid, size=sizes[number], existing=row))
    if mailbox.first_import_pending and mailbox.first_import_scope != FirstImportScope.ALL:
        wanted = _apply_first_import_scope(session, wanted, sizes)
    too_large = [
        w for w in wanted if w.size > settings.MAIL_MAX_MESSAGE_BYTES and w.uid is not None
    ]
    for item in too_large:
        _record_too_large(session, item)
    return [w for w in wanted if w not in too_large]


def _apply_first_import_scope(
    session: PollSession, wanted: list[WantedMessage], sizes: dict[int, int]
) -> list[WantedMessage]:
    mailbox, pop = session.mailbox, session.pop
    assert pop is not None
    keep: list[WantedMessage] = []
    skipped: list[WantedMessage] = []
    if mailbox.first_import_scope == FirstImportScope.NEWEST:
        newest = (
            set(sorted(sizes)[-(mailbox.first_import_newest or 0) :])
            if mailbox.first_import_newest
            else set()
        )
        for item in wanted:
            (keep if item.number in newest else skipped).append(item)
    else:  # SINCE_DATE: ask each message's headers (TOP n 0) for its Date.
        since = mailbox.first_import_since
        for item in wanted:
            date = _header_date(pop.top(item.number, 0))
            (
                skipped if date is not None and since is not None and date.date() < since else keep
            ).append(item)
    rows = [
        ServerMessage(
            mailbox=mailbox,
            uid=item.uid,
            uid_hash=uid_digest(item.uid),
            size=item.size,
            state=ServerMessageState.OUT_OF_SCOPE,
        )
        for item in skipped
        if item.uid is not None and item.existing is None
    ]
    ServerMessage.objects.bulk_create(rows, ignore_conflicts=True)
    session.report.skipped = len(rows)
    return keep + [item for item in skipped if item.uid is None]


def _header_date(header_bytes: bytes) -> datetime | None:
    try:
        value = BytesHeaderParser().parsebytes(header_bytes).get("Date")
        return parsedate_to_datetime(str(value)) if value else None
    except (TypeError, ValueError, IndexError):
        return None


def _record_too_large(session: PollSession, item: WantedMessage) -> None:
    """Leave the message on the server and show a placeholder that says so."""
    mailbox, pop = session.mailbox, session.pop
    assert pop is not None and item.uid is not None
    subject, sender = "", ""
    refused: Pop3Error | None = None
    # TOP is optional (RFC 1939 §7): a server whose CAPA leaves it out is not asked.
    if not pop.capabilities() or "TOP" in pop.capabilities():
        try:
            headers = BytesHeaderParser().parsebytes(pop.top(item.number, 0))
            subject = str(headers.get("Subject", ""))[:900]
            sender = str(headers.get("From", ""))[:250]
        except Pop3Error as error:
            # Some servers refuse TOP although they list it. Record the placeholder anyway,
            # so the next poll neither asks again nor stops here for ever (which would block
            # the whole mailbox), then end this session as after any POP3 error.
            refused = error
        except Exception:  # headers are only a courtesy here; the placeholder stands without them
            subject, sender = "", ""
    megabytes = item.size / (1024 * 1024)
    limit = settings.MAIL_MAX_MESSAGE_BYTES / (1024 * 1024)
    with transaction.atomic():
        message = Message.objects.create(
            organization_id=mailbox.organization_id,
            owner_id=mailbox.owner_id,
            mailbox=mailbox,
            origin=MessageOrigin.POP3,
            import_state=ImportState.PLACEHOLDER,
            subject=subject,
            from_name=sender,
            raw_size=item.size,
            snippet=_(
                "This message is %(size).1f MB, over the %(limit).0f MB limit. It was left on the server."
            )
            % {"size": megabytes, "limit": limit},
        )
        ServerMessage.objects.update_or_create(
            mailbox=mailbox,
            uid_hash=uid_digest(item.uid),
            defaults={
                "uid": item.uid,
                "state": ServerMessageState.TOO_LARGE,
                "size": item.size,
                "message": message,
            },
        )
        message_search_index(message_ids=[message.pk])
    session.report.too_large += 1
    if refused is not None:
        raise refused
