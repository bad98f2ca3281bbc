"""One poll's shared state: the session, the messages it will fetch, and its lease.

The poll itself is ``mailboxes.importer.mailbox_poll``; its stages, each in its own module:
``mailboxes.poll_plan`` (what to fetch), ``mailboxes.poll_fetch`` (RETR, parse, commit) and
``mailboxes.poll_report`` (the outcome on the mailbox).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from django.conf import settings

from mailboxes.leases import lease_renew
from mailboxes.models import Mailbox, PollReport, ServerMessageState
from mailboxes.pop3 import Pop3Session
from mailboxes.server_state import KnownUid

# UIDs the server lists but the hub will not fetch again.
SETTLED_STATES = {
    ServerMessageState.IMPORTED,
    ServerMessageState.DUPLICATE,
    ServerMessageState.OUT_OF_SCOPE,
    ServerMessageState.TOO_LARGE,
    ServerMessageState.QUARANTINED,
}


class LeaseLost(Exception):
    """Another worker took the mailbox over (our lease expired): stop without QUIT."""


@dataclass
class WantedMessage:
    """A message on the server that this poll will fetch."""

    number: int
    uid: str | None  # None: no usable UID (no UIDL, or a UID the server lists twice)
    size: int
    existing: KnownUid | None = None


@dataclass
class PollSession:
    """One poll's state, shared by its planning, fetching and reporting."""

    mailbox: Mailbox
    report: PollReport
    lease_token: str
    pop: Pop3Session | None = None
    retrieved_uncommitted: int = 0
    # Content UIDs ("sha256:…") retrieved in this session, for servers without usable UIDs.
    content_uids: set[str] = field(default_factory=set)
    # Message number -> content UID, for each message without a usable UID that this session
    # retrieved (whether new or already stored): what the deletion policy can act on there.
    content_numbers: dict[int, str] = field(default_factory=dict)
    lease_renewed_at: float = field(default_factory=time.monotonic)
    # retrieved_uncommitted decides QUIT, and two threads change it (the fetching thread, and
    # the idle flush that commits while a RETR waits): every change goes through count_retrieved.
    counter_lock: threading.Lock = field(default_factory=threading.Lock)

    def count_retrieved(self, change: int) -> None:
        """Add ``change`` to the messages retrieved in this session and not yet committed."""
        with self.counter_lock:
            self.retrieved_uncommitted += change


def keep_lease(session: PollSession) -> None:
    """Renew the lease once a third of it has passed; stop if another worker took it."""
    if time.monotonic() - session.lease_renewed_at < settings.MAIL_POLL_LEASE_SECONDS / 3:
        return
    if not lease_renew(mailbox_id=session.mailbox.pk, token=session.lease_token):
        raise LeaseLost()
    session.lease_renewed_at = time.monotonic()
