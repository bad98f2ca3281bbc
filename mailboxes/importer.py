"""One poll of one mailbox: the import pipeline of ../shared/DESIGN.md.

lease → connect → authenticate → UIDL → diff against known UIDs (one query) → for each new
message RETR, parse, and commit (in batches; each message all-or-nothing) → deletion policy
(DELE only committed UIDs) → QUIT only if every retrieved message is committed, else drop the
connection so the server deletes nothing (RFC 1939 §6: deletions happen only in the UPDATE
state, which QUIT starts) → record the outcome.
"""

from __future__ import annotations

import logging

from django.utils import timezone
from django.utils.translation import gettext as _

from mailboxes.leases import lease_acquire, lease_release
from mailboxes.models import Mailbox, PollReport, ServerMessage
from mailboxes.poll_fetch import fetch_and_store
from mailboxes.poll_plan import plan_fetch
from mailboxes.poll_report import finish_failed, finish_ok, save_progress
from mailboxes.poll_session import LeaseLost, PollSession
from mailboxes.pop3 import open_pop3_session
from mailboxes.pop3_errors import Pop3Error
from mailboxes.server_state import deletions_due, known_uids, mark_gone

logger = logging.getLogger(__name__)


def mailbox_poll(*, mailbox_id: int) -> PollReport | None:
    """Poll one mailbox now. Returns its report, or None if another worker is polling it."""
    token = lease_acquire(mailbox_id=mailbox_id)
    if token is None:
        logger.info("poll skipped: mailbox %s is being polled by another worker", mailbox_id)
        return None
    try:
        mailbox = Mailbox.objects.select_related("organization", "owner").get(pk=mailbox_id)
        report = PollReport.objects.create(mailbox=mailbox)
        session = PollSession(mailbox=mailbox, report=report, lease_token=token)
        try:
            _poll(session)
        except Pop3Error as error:
            finish_failed(
                session, code=error.code, message=str(error.user_message), detail=error.detail
            )
        except LeaseLost:
            finish_failed(
                session,
                code="lease_lost",
                message=_("Another worker took over this poll; it will continue there."),
                detail="lease lost",
            )
        except Exception:
            logger.exception("poll of mailbox %s failed unexpectedly", mailbox_id)
            finish_failed(
                session,
                code="internal",
                message=_(
                    "An internal error stopped this poll. The operator can see the details in the worker's log."
                ),
                detail="internal error",
            )
        finally:
            if session.pop is not None:
                session.pop.abort()
        return report
    finally:
        lease_release(mailbox_id=mailbox_id, token=token)


def _poll(session: PollSession) -> None:
    mailbox, report = session.mailbox, session.report
    session.pop = open_pop3_session(
        host=mailbox.pop3_host,
        port=mailbox.pop3_port,
        security=mailbox.pop3_security,
        username=mailbox.pop3_username,
        password=mailbox.pop3_password(),
        accept_self_signed=mailbox.accept_self_signed,
    )
    pop = session.pop
    sizes = pop.sizes()
    uids = pop.uidl()
    report.on_server = len(sizes)
    known = known_uids(mailbox)
    wanted = plan_fetch(session, sizes, uids, known)
    report.new = len(wanted)
    save_progress(report)
    failed = fetch_and_store(session, wanted)
    to_delete = deletions_due(
        mailbox,
        pop_uids=_identities(uids, session.content_numbers),
        known=known_uids(mailbox) if wanted else known,
    )
    all_committed = session.retrieved_uncommitted == 0
    if all_committed:
        for number in to_delete.values():
            pop.delete(number)
        pop.quit()  # RFC 1939 §6: the DELEs above take effect now, and only now.
        session.pop = None
        if to_delete:
            ServerMessage.objects.filter(pk__in=list(to_delete)).update(
                deleted_from_server_at=timezone.now()
            )
            report.deleted_on_server = len(to_delete)
    mark_gone(mailbox, uids, known)
    if mailbox.first_import_pending:
        Mailbox.objects.filter(pk=mailbox.pk).update(first_import_pending=False)
    finish_ok(session, failed=failed)


def _identities(uids: dict[int, str] | None, content_numbers: dict[int, str]) -> dict[int, str]:
    """Message number -> the id the hub knows it by: its UID, or for a message without a usable
    UID (no UIDL, or a UID listed twice) the content UID of the bytes RETR gave this session.

    A content UID stands only for the message retrieved under that number in this session:
    RFC 1939 §3 keeps message numbers fixed for the whole session, so a DELE of that number at
    the end of it removes exactly the bytes that were hashed and committed. A message the
    session could not retrieve has no entry, and so is never deleted.
    """
    identities = dict(uids or {})
    identities.update(content_numbers)
    return identities
