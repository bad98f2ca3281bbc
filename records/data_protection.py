"""A candidate's rights over their data: erasure (GDPR art. 17) and access (art. 15).

Both act for the organisation, which holds the data, so they reach every mailbox of the
organisation and do not follow the sharing rule (``sharing.visibility``): the admin who answers a
request must see and remove all of it. Both are recorded in the audit trail.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from mailboxes.models import Attachment, Message, MessageAddress, MessageLink
from mailboxes.retention import messages_delete
from records.models import Candidate, RecordAddress, User
from sharing.models import AuditAction, SharingAuditEntry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErasurePlan:
    """What erasing a candidate does, counted before it is done (and shown for confirmation)."""

    addresses: int  # current and past addresses, deleted with the candidate
    messages_deleted: int  # mail linked to this candidate and to no other record
    messages_unlinked: int  # mail that also concerns other records: kept, unlinked
    attachments: int  # attachments of the deleted mail

    def as_counts(self) -> dict[str, int]:
        return {
            "deleted": self.messages_deleted,
            "unlinked": self.messages_unlinked,
            "attachments": self.attachments,
            "addresses": self.addresses,
        }


def _linked_messages(candidate: Candidate) -> QuerySet[Message]:
    return Message.objects.filter(
        Exists(MessageLink.objects.filter(message_id=OuterRef("pk"), record_id=candidate.pk)),
        organization_id=candidate.organization_id,
    )


def _mail_of_others(candidate: Candidate) -> Exists:
    return Exists(
        MessageLink.objects.filter(message_id=OuterRef("pk")).exclude(record_id=candidate.pk)
    )


def candidate_erasure_plan(*, candidate: Candidate) -> ErasurePlan:
    linked = _linked_messages(candidate)
    only_this = linked.exclude(_mail_of_others(candidate))
    return ErasurePlan(
        addresses=RecordAddress.objects.filter(record_id=candidate.pk).count(),
        messages_deleted=only_this.count(),
        messages_unlinked=linked.filter(_mail_of_others(candidate)).count(),
        attachments=Attachment.objects.filter(message__in=only_this.values("pk")).count(),
    )


def candidate_erase(*, candidate: Candidate, actor: User) -> ErasurePlan:
    """Erase a candidate: the record, its addresses (history included), and the mail that
    concerns only this candidate, with its attachments and stored files.

    Mail that also concerns other records stays for them, without its link to the candidate.
    The POP3 UID bookkeeping stays, so erased mail still on a server is not imported again.
    One transaction; stored files are removed after it commits.
    """
    with transaction.atomic():
        # Lock the record: two admins erasing at once, or an import linking new mail to it
        # meanwhile, must not leave a half-erased candidate.
        candidate = Candidate.objects.select_for_update().get(pk=candidate.pk)
        plan = candidate_erasure_plan(candidate=candidate)
        record_name, record_pk = candidate.display_name, candidate.pk
        only_this = list(
            _linked_messages(candidate)
            .exclude(_mail_of_others(candidate))
            .values_list("pk", flat=True)
        )
        messages_delete(message_ids=only_this)
        # The record's deletion cascades to its addresses (every one, removed ones too) and to
        # its remaining links, which unlinks the mail other records keep.
        candidate.delete()
        SharingAuditEntry.objects.create(
            organization_id=candidate.organization_id,
            actor=actor,
            action=AuditAction.RECORD_ERASED,
            record_name=record_name,
            counts=plan.as_counts(),
        )
    logger.info("candidate %s erased by user %s: %s", record_pk, actor.pk, plan.as_counts())
    return plan


def candidate_export_messages(*, candidate: Candidate) -> QuerySet[Message]:
    """Every message of the organisation that concerns the candidate, oldest first.

    Linked to the record (through any address it has had, or its thread), or with one of its
    current or past addresses among the correspondents (Bcc and Reply-To included, which do not
    link): a subject-access answer must not miss mail for want of a link.
    """
    addresses = RecordAddress.objects.filter(record_id=candidate.pk).values("address")
    return (
        Message.objects.filter(organization_id=candidate.organization_id)
        .filter(
            Q(Exists(MessageLink.objects.filter(message_id=OuterRef("pk"), record_id=candidate.pk)))
            | Q(
                Exists(
                    MessageAddress.objects.filter(message_id=OuterRef("pk"), address__in=addresses)
                )
            )
        )
        .order_by("sort_at", "pk")
    )


def candidate_export_record(*, candidate: Candidate, actor: User, messages: int) -> None:
    """Note in the audit trail that ``actor`` exported the candidate's mail."""
    SharingAuditEntry.objects.create(
        organization_id=candidate.organization_id,
        actor=actor,
        action=AuditAction.RECORD_EXPORTED,
        record_name=candidate.display_name,
        counts={"messages": messages},
    )
    logger.info("candidate %s mail exported by user %s", candidate.pk, actor.pk)
