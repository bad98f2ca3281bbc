"""Sending mail from the hub: compose a draft, send it, and send workflow notifications.

A message is written in two steps, so that a slow or failing server never loses what the
writer typed:

1. ``message_compose`` checks the input, builds the RFC 5322 bytes (``mailboxes.composing``)
   and stores them as a DRAFT linked like any message (the records given, the records of the
   recipients, and the links of the message it answers or forwards), in one transaction.
2. ``message_send`` claims the draft (DRAFT or FAILED -> SENDING, a conditional update, so a
   double click or a redelivered task sends once), hands the stored bytes to the SMTP server
   and records SENT, or FAILED with the reason in plain words.

A Celery task can call ``message_send`` with the loaded row; nothing here depends on running in
a request. The stored bytes are exactly what was sent, so when the mailbox's provider hands the
sent copy back over POP3, ``mailboxes.storing`` recognises it by Message-ID (origin HUB, same
mailbox) and does not import it twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from mailboxes.composing import (
    Draft,
    MessageInvalid,
    OutgoingAttachment,
    Recipient,
    UploadedFileLike,
    attachment_from_upload,
    attachments_clean,
    attachments_of,
    body_clean,
    draft_build,
    forward_subject,
    forward_text,
    new_message_id,
    recipients_check_count,
    recipients_parse,
    reference_chain,
    reply_quote,
    reply_recipients,
    reply_subject,
    reply_to_warning,
    sender_address_clean,
    single_line_name,
    subject_clean,
    user_zone,
)
from mailboxes.credentials import CredentialUnreadable
from mailboxes.linking import (
    LINKING_ROLES,
    inherited_records,
    message_link,
    records_for_addresses,
    thread_for,
)
from mailboxes.mailstore import blob_store, content_hash, raw_read, raw_store
from mailboxes.models import (
    AddressRole,
    Attachment,
    Direction,
    Mailbox,
    Message,
    MessageAddress,
    MessageOrigin,
    SendState,
    SystemSender,
    Thread,
)
from mailboxes.parsing import parse_message
from mailboxes.search_index import message_search_index
from mailboxes.smtp import SmtpAccount, SmtpError, send_raw_message
from mailboxes.smtp_errors import refused_recipients_message
from records.addresses import domain_of
from records.models import Membership, Organization, Record, Role, User

__all__ = [
    "SystemSenderMissing",
    "message_compose",
    "message_send",
    "notification_send",
    "reply_recipients",
    "reply_to_warning",
]

logger = logging.getLogger(__name__)

SENDABLE_STATES = (SendState.DRAFT, SendState.FAILED)
ENVELOPE_ROLES = (AddressRole.TO, AddressRole.CC, AddressRole.BCC)


class SystemSenderMissing(Exception):
    """The organisation has no active system sender, so notifications cannot go out."""

    user_message = gettext_lazy(
        "The organisation has no system sender set up, so notifications cannot be sent."
    )


def message_compose(
    *,
    sender: User,
    mailbox: Mailbox | None,
    to: Sequence[str],
    cc: Sequence[str],
    bcc: Sequence[str],
    subject: str,
    body_text: str,
    attachments: Sequence[OutgoingAttachment | UploadedFileLike] = (),
    in_reply_to: Message | None = None,
    forward_of: Message | None = None,
    records: Iterable[Record] = (),
    include_quote: bool = True,
) -> Message:
    """Check, build and store a DRAFT from ``mailbox`` (default: the sender's active one).

    ``in_reply_to``: the message answered (subject "Re:", In-Reply-To, References, its thread,
    its links, its text quoted below unless ``include_quote`` is False because the form
    already holds the quote). ``forward_of``: the message forwarded (subject "Fwd:", its text
    and attachments, its links; a new thread). Raises MessageInvalid (a ValidationError keyed
    by form field) before anything is stored; PermissionDenied when the sender may not use the
    mailbox, the parent message or a record (hidden and missing alike).
    """
    if in_reply_to is not None and forward_of is not None:
        raise ValueError("a message is a reply or a forward, not both")
    membership = _membership(sender)
    mailbox = _sending_mailbox(sender, mailbox)
    parent = in_reply_to or forward_of
    if parent is not None and not Message.objects.visible_to(sender).filter(pk=parent.pk).exists():
        raise PermissionDenied
    record_ids = {record.pk for record in records}
    if record_ids and Record.objects.visible_to(sender).filter(pk__in=record_ids).count() != len(
        record_ids
    ):
        raise PermissionDenied

    zone = user_zone(sender.time_zone)
    body = body_clean(body_text)
    subject = subject_clean(subject)
    in_reply_to_id = ""
    references: list[str] = []
    files = [attachment_from_upload(item) for item in attachments]
    if in_reply_to is not None:
        subject = reply_subject(subject or in_reply_to.subject)
        in_reply_to_id, references = reference_chain(in_reply_to)
        if include_quote and in_reply_to.body_text:
            body = _below(body, reply_quote(in_reply_to, zone=zone))
    if forward_of is not None:
        subject = forward_subject(subject or forward_of.subject)
        if include_quote:
            body = _below(body, forward_text(forward_of, zone=zone))
        files = attachments_of(forward_of) + files
    draft = _draft(
        from_name=single_line_name(sender.full_name),
        from_address=sender_address_clean(mailbox.email_address),
        to=to,
        cc=cc,
        bcc=bcc,
        subject=subject,
        body_text=body,
        attachments=files,
        in_reply_to=in_reply_to_id,
        references=references,
        zone_name=sender.time_zone,
    )
    raw = draft_build(draft)
    return _draft_store(
        draft=draft,
        raw=raw,
        organization_id=membership.organization_id,
        owner_id=sender.pk,
        mailbox=mailbox,
        parent=parent,
        reply=in_reply_to is not None,
        record_ids=record_ids,
    )


def message_send(*, message: Message) -> Message:
    """Send a DRAFT (or a FAILED message again) and return it, SENT or FAILED.

    The claim is a conditional update from DRAFT/FAILED to SENDING: when it changes no row the
    message is already being sent or was sent, and it is returned as it is without a second
    delivery. An SMTP failure leaves the message FAILED with the reason in ``send_error`` (the
    draft is kept; it can be sent again); when the server accepted the message for some
    recipients only, it is SENT and ``send_error`` names the refused ones.
    """
    claimed = Message.objects.filter(
        pk=message.pk, origin=MessageOrigin.HUB, send_state__in=SENDABLE_STATES
    ).update(send_state=SendState.SENDING, send_error="")
    if not claimed:
        message.refresh_from_db()
        return message
    try:
        account = _smtp_account(message)
        recipients = list(
            dict.fromkeys(
                message.addresses.filter(role__in=ENVELOPE_ROLES)
                .order_by("pk")
                .values_list("address", flat=True)
            )
        )
        receipt = send_raw_message(
            account=account,
            sender=message.from_address,
            recipients=recipients,
            raw=raw_read(message.raw.name),
        )
    except SmtpError as exc:
        logger.info("message %s not sent: %s", message.pk, exc)
        return _send_finish(message, SendState.FAILED, str(exc.user_message))
    except _NoAccount as exc:
        logger.info("message %s not sent: %s", message.pk, exc.message)
        return _send_finish(message, SendState.FAILED, exc.message)
    except BaseException:
        # A bug or a task time limit: never leave the message SENDING, where it could never
        # be sent again. (SMTP failures are SmtpErrors, handled above.)
        logger.exception("message %s not sent: unexpected error", message.pk)
        _send_finish(message, SendState.FAILED, _("Sending failed because of an internal error."))
        raise
    warning = str(refused_recipients_message(receipt.refused)) if receipt.refused else ""
    if receipt.refused:
        logger.info("message %s sent; refused recipients %s", message.pk, sorted(receipt.refused))
    return _send_finish(message, SendState.SENT, warning)


def notification_send(
    *,
    organization: Organization,
    record: Record,
    subject: str,
    body_text: str,
    to: Sequence[str],
) -> Message:
    """Send a workflow notification about ``record`` through the organisation's system sender.

    The message is owned by the record's owner (or, if that user has left, the organisation's
    first admin), linked to ``record`` and to the recipients' records, so it follows the
    record's visibility. Returns it SENT or FAILED (see message_send); raises MessageInvalid
    for bad input and SystemSenderMissing when no active system sender is set up.
    """
    if record.organization_id != organization.pk:
        raise ValueError("the record belongs to another organisation")
    system_sender = SystemSender.objects.filter(organization=organization, is_active=True).first()
    if system_sender is None:
        raise SystemSenderMissing(organization.pk)
    draft = _draft(
        from_name=single_line_name(system_sender.name),
        from_address=sender_address_clean(system_sender.address),
        to=to,
        cc=(),
        bcc=(),
        subject=subject_clean(subject),
        body_text=body_clean(body_text),
        attachments=[],
        in_reply_to="",
        references=[],
        zone_name="UTC",
        auto_submitted=True,
    )
    raw = draft_build(draft)
    message = _draft_store(
        draft=draft,
        raw=raw,
        organization_id=organization.pk,
        owner_id=_notification_owner(organization, record),
        mailbox=None,
        parent=None,
        reply=False,
        record_ids={record.pk},
        via_system_sender=True,
    )
    return message_send(message=message)


# -- internals -----------------------------------------------------------------------------


class _NoAccount(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _membership(user: User) -> Membership:
    membership = getattr(user, "membership", None)
    if membership is None or not user.is_active:
        raise PermissionDenied
    return membership


def _sending_mailbox(sender: User, mailbox: Mailbox | None) -> Mailbox:
    if mailbox is None:
        mailbox = Mailbox.objects.filter(owner=sender, is_active=True).first()
        if mailbox is None:
            raise MessageInvalid(_("Set up a mailbox in your settings before sending mail."))
    # Only the owner sends from a mailbox: someone else's would put words in their name.
    if mailbox.owner_id != sender.pk:
        raise PermissionDenied
    return mailbox


def _below(text: str, addition: str) -> str:
    """``addition`` after the writer's text and a blank line (no leading blank lines)."""
    text = text.rstrip()
    return f"{text}\n\n{addition}" if text else addition


def _draft(
    *,
    from_name: str,
    from_address: str,
    to: Sequence[str],
    cc: Sequence[str],
    bcc: Sequence[str],
    subject: str,
    body_text: str,
    attachments: list[OutgoingAttachment],
    in_reply_to: str,
    references: list[str],
    zone_name: str,
    auto_submitted: bool = False,
) -> Draft:
    to_list = recipients_parse(to, field="to")
    cc_list = recipients_parse(cc, field="cc")
    bcc_list = recipients_parse(bcc, field="bcc")
    # Someone in To is not copied again in Cc or Bcc (one delivery, one row per role).
    seen = {r.address for r in to_list}
    cc_list = [r for r in cc_list if r.address not in seen]
    seen |= {r.address for r in cc_list}
    bcc_list = [r for r in bcc_list if r.address not in seen]
    recipients_check_count(to_list, cc_list, bcc_list)
    return Draft(
        from_name=from_name,
        from_address=from_address,
        to=to_list,
        cc=cc_list,
        bcc=bcc_list,
        subject=subject,
        body_text=body_text,
        attachments=attachments_clean(attachments),
        message_id=new_message_id(from_address),
        in_reply_to=in_reply_to,
        references=references,
        date=timezone.now().astimezone(user_zone(zone_name)),
        auto_submitted=auto_submitted,
    )


def _draft_store(
    *,
    draft: Draft,
    raw: bytes,
    organization_id: int,
    owner_id: int,
    mailbox: Mailbox | None,
    parent: Message | None,
    reply: bool,
    record_ids: set[int],
    via_system_sender: bool = False,
) -> Message:
    """Store the draft with its correspondents, attachments, thread and links, all or nothing."""
    parsed = parse_message(raw)
    digest = content_hash(raw)
    now = timezone.now()
    people: list[tuple[str, Recipient]] = [
        (AddressRole.FROM, Recipient(draft.from_name, draft.from_address)),
        *((AddressRole.TO, r) for r in draft.to),
        *((AddressRole.CC, r) for r in draft.cc),
        *((AddressRole.BCC, r) for r in draft.bcc),
    ]
    linked = set(record_ids) | records_for_addresses(
        organization_id=organization_id,
        addresses=[person.address for role, person in people if role in LINKING_ROLES],
    )
    if parent is not None:
        linked |= inherited_records(parent_message_pks=[parent.pk])
    with transaction.atomic():
        thread: Thread = thread_for(
            organization_id=organization_id,
            parents=[{"pk": parent.pk, "thread_id": parent.thread_id}] if reply and parent else [],
            subject=draft.subject,
            sort_at=now,
        )
        message = Message.objects.create(
            organization_id=organization_id,
            owner_id=owner_id,
            mailbox=mailbox,
            origin=MessageOrigin.HUB,
            direction=Direction.OUTGOING,
            send_state=SendState.DRAFT,
            sent_via_system_sender=via_system_sender,
            thread=thread,
            message_id=draft.message_id,
            in_reply_to=draft.in_reply_to,
            references=" ".join(draft.references),
            subject=draft.subject,
            from_name=draft.from_name[:300],
            from_address=draft.from_address,
            sort_at=now,
            snippet=parsed.snippet[:300],
            body_text=draft.body_text,
            has_attachments=bool(draft.attachments),
            raw=raw_store(raw=raw, digest=digest),
            raw_sha256=digest,
            raw_size=len(raw),
            is_read=True,
            created_at=now,
        )
        MessageAddress.objects.bulk_create(
            MessageAddress(
                message=message,
                role=role,
                name=person.name[:300],
                address=person.address,
                domain=domain_of(person.address),
            )
            for role, person in people
        )
        Attachment.objects.bulk_create(
            Attachment(
                message=message,
                blob=blob_store(payload=file.payload),
                filename=file.filename,
                content_type=file.content_type,
                size=len(file.payload),
            )
            for file in draft.attachments
        )
        message_link(message=message, record_ids=linked)
        message_search_index(message_ids=[message.pk])
    return message


def _smtp_account(message: Message) -> SmtpAccount:
    """The outgoing account a message goes through: its mailbox, or the system sender."""
    try:
        if message.sent_via_system_sender:
            system_sender = SystemSender.objects.filter(
                organization_id=message.organization_id, is_active=True
            ).first()
            if system_sender is None:
                raise _NoAccount(str(SystemSenderMissing.user_message))
            return SmtpAccount.of(system_sender)
        # Read afresh: the owner may have corrected the password since the row was loaded.
        mailbox = (
            Mailbox.objects.filter(pk=message.mailbox_id).first() if message.mailbox_id else None
        )
        if mailbox is None:
            raise _NoAccount(_("The mailbox this message was written in no longer exists."))
        return SmtpAccount.of(mailbox)
    except CredentialUnreadable:
        raise _NoAccount(
            _("The stored password cannot be read. Enter it again in the mailbox settings.")
        ) from None


def _send_finish(message: Message, state: str, send_error: str) -> Message:
    """Move a SENDING message to ``state``; only from SENDING, so a late writer changes nothing."""
    now = timezone.now()
    values: dict[str, object] = {"send_state": state, "send_error": send_error}
    if state == SendState.SENT:
        values.update(sent_at=now, sort_at=now)
    Message.objects.filter(pk=message.pk, send_state=SendState.SENDING).update(**values)
    if state == SendState.SENT and message.thread_id:
        Thread.objects.filter(pk=message.thread_id, last_message_at__lt=now).update(
            last_message_at=now
        )
    message.refresh_from_db()
    return message


def _notification_owner(organization: Organization, record: Record) -> int:
    """The record's owner while they are an active member; else the first admin."""
    owner_id = (
        Membership.objects.filter(
            organization=organization, user_id=record.owner_id, user__is_active=True
        )
        .values_list("user_id", flat=True)
        .first()
    )
    if owner_id is not None:
        return owner_id
    admin_id = (
        Membership.objects.filter(organization=organization, role=Role.ADMIN, user__is_active=True)
        .order_by("created_at", "pk")
        .values_list("user_id", flat=True)
        .first()
    )
    if admin_id is None:
        raise ValueError("the organisation has no active admin to own the notification")
    return admin_id
