"""Mail in and out: mailbox accounts, messages, attachments, links to records, poll state.

A message's ``owner`` is the user whose mailbox fetched or sent it (changed only by an admin's
hand-over). ``ServerMessage`` remembers every UID seen on a mailbox's POP3 server and what became
of it; it is what makes a poll idempotent.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from mailboxes.credentials import decrypt_secret, encrypt_secret
from records.models import Organization, Record


class Security(models.TextChoices):
    SSL = "ssl", _("SSL/TLS")
    STARTTLS = "starttls", _("STARTTLS")
    NONE = "none", _("None (unencrypted)")


class DeletionPolicy(models.TextChoices):
    KEEP = "keep", _("Keep messages on the server")
    AFTER_IMPORT = "after_import", _("Delete from the server after import")
    AFTER_DAYS = "after_days", _("Delete from the server after a number of days")
    WHEN_DELETED_HERE = "when_deleted_here", _("Delete from the server when deleted here")


class FirstImportScope(models.TextChoices):
    ALL = "all", _("Everything on the server")
    SINCE_DATE = "since_date", _("Only mail since a date")
    NEWEST = "newest", _("Only the newest messages")


class MailboxStatus(models.TextChoices):
    NEW = "new", _("Not polled yet")
    OK = "ok", _("Working")
    AUTH_FAILED = "auth_failed", _("Password rejected: polling stopped")
    ERROR = "error", _("Last poll failed: retrying")
    PAUSED = "paused", _("Paused")


class MailboxQuerySet(models.QuerySet["Mailbox"]):
    def owned_by(self, user: Any) -> MailboxQuerySet:
        return self.filter(owner=user, organization_id=user.membership.organization_id)

    def due(self, now: Any = None) -> MailboxQuerySet:
        """Mailboxes whose next poll time has passed and that may be polled (indexed)."""
        now = now or timezone.now()
        return self.filter(
            is_active=True,
            status__in=POLLABLE_STATUSES,
            next_poll_at__lte=now,
            owner__is_active=True,
        )


POLLABLE_STATUSES = [MailboxStatus.NEW, MailboxStatus.OK, MailboxStatus.ERROR]


class Mailbox(models.Model):
    """A POP3/SMTP account of one user. Exactly one of a user's mailboxes is active."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="mailboxes"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mailboxes"
    )
    name = models.CharField(_("account name"), max_length=100)
    email_address = models.CharField(_("email address"), max_length=254)

    pop3_host = models.CharField(_("incoming server"), max_length=253)
    pop3_port = models.PositiveIntegerField(_("incoming port"), default=995)
    pop3_security = models.CharField(
        _("incoming security"), max_length=10, choices=Security.choices, default=Security.SSL
    )
    pop3_username = models.CharField(_("user name"), max_length=254)
    pop3_password_token = models.TextField(editable=False, blank=True)
    accept_self_signed = models.BooleanField(
        _("accept a self-signed certificate"),
        default=False,
        help_text=_("Only an admin can tick this. Use it only for a server you run yourself."),
    )

    smtp_same_credentials = models.BooleanField(
        _("use the same credentials for the outgoing server"), default=True
    )
    smtp_host = models.CharField(_("outgoing server"), max_length=253)
    smtp_port = models.PositiveIntegerField(_("outgoing port"), default=465)
    smtp_security = models.CharField(
        _("outgoing security"), max_length=10, choices=Security.choices, default=Security.SSL
    )
    smtp_username = models.CharField(_("outgoing user name"), max_length=254, blank=True)
    smtp_password_token = models.TextField(editable=False, blank=True)

    deletion_policy = models.CharField(
        _("message deletion"),
        max_length=20,
        choices=DeletionPolicy.choices,
        default=DeletionPolicy.KEEP,
    )
    delete_after_days = models.PositiveIntegerField(_("days on the server"), null=True, blank=True)

    first_import_scope = models.CharField(
        _("first import"),
        max_length=12,
        choices=FirstImportScope.choices,
        default=FirstImportScope.ALL,
    )
    first_import_since = models.DateField(_("import mail since"), null=True, blank=True)
    first_import_newest = models.PositiveIntegerField(
        _("number of newest messages"), null=True, blank=True
    )
    # True until a poll has applied the first-import scope to what is on the server; set again
    # when the owner widens the scope, so the next poll re-applies it to what was left out.
    first_import_pending = models.BooleanField(default=True, editable=False)

    is_active = models.BooleanField(_("active"), default=False)
    status = models.CharField(
        max_length=12, choices=MailboxStatus.choices, default=MailboxStatus.NEW
    )
    status_code = models.CharField(max_length=40, blank=True)
    status_message = models.TextField(blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    next_poll_at = models.DateTimeField(default=timezone.now)
    last_poll_at = models.DateTimeField(null=True, blank=True)
    # The poll lease: a worker owns the mailbox while lease_expires_at is in the future and
    # lease_token is its own (see mailboxes.leases).
    lease_token = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MailboxQuerySet.as_manager()

    class Meta:
        verbose_name = _("mailbox")
        constraints = [
            models.UniqueConstraint(
                fields=["owner"], condition=Q(is_active=True), name="one_active_mailbox_per_user"
            ),
            models.CheckConstraint(
                condition=Q(pop3_port__gte=1, pop3_port__lte=65535)
                & Q(smtp_port__gte=1, smtp_port__lte=65535),
                name="mailbox_ports_in_range",
            ),
            models.CheckConstraint(
                condition=~Q(deletion_policy=DeletionPolicy.AFTER_DAYS)
                | Q(delete_after_days__gte=1),
                name="mailbox_after_days_needs_days",
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_poll_at"],
                condition=Q(is_active=True),
                name="mailbox_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.email_address}>"

    # Passwords: set through these methods only; the token is never rendered.
    def set_pop3_password(self, password: str) -> None:
        self.pop3_password_token = encrypt_secret(password)

    def set_smtp_password(self, password: str) -> None:
        self.smtp_password_token = encrypt_secret(password)

    def pop3_password(self) -> str:
        return decrypt_secret(self.pop3_password_token)

    def smtp_credentials(self) -> tuple[str, str]:
        """The user name and password for the outgoing server."""
        if self.smtp_same_credentials:
            return self.pop3_username, self.pop3_password()
        return self.smtp_username, decrypt_secret(self.smtp_password_token)

    @property
    def is_polling_stopped(self) -> bool:
        return self.status == MailboxStatus.AUTH_FAILED


class PollOutcome(models.TextChoices):
    OK = "ok", _("Completed")
    AUTH_FAILED = "auth_failed", _("Password rejected")
    ERROR = "error", _("Failed")
    PARTIAL = "partial", _("Completed with failed messages")


class PollReport(models.Model):
    """What one poll of a mailbox did, shown on the mailbox page."""

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="poll_reports")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=12, choices=PollOutcome.choices, default=PollOutcome.OK)
    on_server = models.PositiveIntegerField(default=0)
    new = models.PositiveIntegerField(default=0)
    imported = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    too_large = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    quarantined = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    deleted_on_server = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["mailbox", "-started_at"])]
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"poll of {self.mailbox_id} at {self.started_at:%Y-%m-%d %H:%M}: {self.outcome}"


class ServerMessageState(models.TextChoices):
    IMPORTED = "imported", _("Imported")
    DUPLICATE = "duplicate", _("Already in the hub")
    OUT_OF_SCOPE = "out_of_scope", _("Outside the first-import scope")
    TOO_LARGE = "too_large", _("Too large to download")
    FAILED = "failed", _("Import failed: will retry")
    QUARANTINED = "quarantined", _("Quarantined after repeated failures")


def uid_digest(uid: str) -> str:
    """UIDs are opaque and may be any length, so uniqueness is on a fixed-size digest."""
    return hashlib.sha256(uid.encode("utf-8", "surrogateescape")).hexdigest()


class ServerMessage(models.Model):
    """One UID seen on a mailbox's POP3 server, and what the hub did with it."""

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="server_messages")
    uid = models.TextField()
    uid_hash = models.CharField(max_length=64)
    state = models.CharField(max_length=14, choices=ServerMessageState.choices)
    message = models.ForeignKey(
        "Message", on_delete=models.SET_NULL, null=True, blank=True, related_name="server_copies"
    )
    size = models.PositiveBigIntegerField(null=True, blank=True)
    failures = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    first_seen_at = models.DateTimeField(default=timezone.now)
    imported_at = models.DateTimeField(null=True, blank=True)
    deleted_from_server_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["mailbox", "uid_hash"], name="server_message_uid_unique"
            ),
        ]
        indexes = [models.Index(fields=["mailbox", "state"])]

    def __str__(self) -> str:
        return f"{self.uid[:40]} ({self.state})"


class Thread(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    subject = models.CharField(max_length=998, blank=True)
    last_message_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.subject or f"thread {self.pk}"


class MessageOrigin(models.TextChoices):
    POP3 = "pop3", _("Fetched over POP3")
    HUB = "hub", _("Sent from RecruitMail")


class Direction(models.TextChoices):
    INCOMING = "in", _("Received")
    OUTGOING = "out", _("Sent")


class ImportState(models.TextChoices):
    PARSED = "parsed", _("Parsed")
    UNPARSED = "unparsed", _("Stored raw: could not be parsed")
    PLACEHOLDER = "placeholder", _("Too large: left on the server")


class SendState(models.TextChoices):
    NOT_APPLICABLE = "", _("—")
    DRAFT = "draft", _("Draft")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Not sent")


class MessageQuerySet(models.QuerySet["Message"]):
    def visible_to(self, user: Any) -> MessageQuerySet:
        """The messages ``user`` may see: the one rule, in ``sharing.visibility``."""
        from sharing.visibility import visible_messages

        return visible_messages(self, user)  # type: ignore[return-value]

    def owned_by(self, user: Any) -> MessageQuerySet:
        """The messages ``user`` owns, as the rule shows them to their owner (see
        ``sharing.visibility.own_messages``)."""
        from sharing.visibility import own_messages

        return own_messages(self, user)  # type: ignore[return-value]


class Message(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="messages"
    )
    mailbox = models.ForeignKey(
        Mailbox, on_delete=models.SET_NULL, null=True, blank=True, related_name="messages"
    )
    origin = models.CharField(max_length=8, choices=MessageOrigin.choices)
    direction = models.CharField(
        max_length=3, choices=Direction.choices, default=Direction.INCOMING
    )
    import_state = models.CharField(
        max_length=12, choices=ImportState.choices, default=ImportState.PARSED
    )
    send_state = models.CharField(max_length=8, choices=SendState.choices, blank=True, default="")
    # Why the last send failed (plain words for the writer), or a warning about recipients the
    # server refused when it took the message for the others; "" otherwise.
    send_error = models.TextField(blank=True)
    # A workflow notification: sent through the organisation's SystemSender, not a mailbox.
    sent_via_system_sender = models.BooleanField(default=False)
    thread = models.ForeignKey(
        Thread, on_delete=models.SET_NULL, null=True, blank=True, related_name="messages"
    )

    message_id = models.CharField(max_length=998, blank=True, db_index=True)
    in_reply_to = models.CharField(max_length=998, blank=True)
    references = models.TextField(blank=True)
    subject = models.CharField(max_length=998, blank=True)
    from_name = models.CharField(max_length=300, blank=True)
    from_address = models.CharField(max_length=254, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # What lists sort on: the Date header when plausible, else the time the hub got it.
    sort_at = models.DateTimeField(default=timezone.now)
    snippet = models.CharField(max_length=300, blank=True)
    body_text = models.TextField(blank=True)
    body_html = models.TextField(blank=True)
    has_remote_images = models.BooleanField(default=False)
    has_attachments = models.BooleanField(default=False)
    defects = models.JSONField(default=list, blank=True)

    raw = models.FileField(upload_to="raw/%Y/%m/", blank=True)
    raw_sha256 = models.CharField(max_length=64, blank=True)
    raw_size = models.PositiveBigIntegerField(default=0)

    is_read = models.BooleanField(default=False)
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    records = models.ManyToManyField(Record, through="MessageLink", related_name="messages")

    objects = MessageQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["owner", "-sort_at"]),
            models.Index(fields=["mailbox", "raw_sha256"]),
            models.Index(fields=["organization", "-sort_at"]),
            models.Index(fields=["thread", "sort_at"]),
            # Inbox and Sent, newest first, and their capped counts read from the index alone
            # (migration 0008 says why).
            models.Index(
                fields=["owner", "direction", "-sort_at"],
                include=["mailbox", "organization", "id"],
                condition=Q(deleted_at__isnull=True),
                name="message_folder_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.subject or gettext("(no subject)")


class MessageSearch(models.Model):
    """A message's search index entry (``mailboxes.search_index``), written in the transaction
    that stores the message. PostgreSQL fills ``vector`` (one GIN index, created by migration
    ``0004_message_search_entries``; the table is partitioned by ``sort_at`` since ``0006``),
    SQLite ``document``."""

    message = models.OneToOneField(
        Message, on_delete=models.CASCADE, primary_key=True, related_name="search_entry"
    )
    document = models.TextField(blank=True)
    vector = SearchVectorField(null=True)
    # The message's sort_at, here so that a search orders its matches without reading the
    # messages: only the first page's worth of them then meets the visibility rule. On
    # PostgreSQL the table is partitioned by it (``mailboxes.search_partitions``).
    sort_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"search entry of message {self.message_id}"


class AddressRole(models.TextChoices):
    FROM = "from", _("From")
    TO = "to", _("To")
    CC = "cc", _("Cc")
    BCC = "bcc", _("Bcc")
    REPLY_TO = "reply_to", _("Reply-To")


class MessageAddress(models.Model):
    """A correspondent of a message, normalised, for linking, search and the excluded-domain rule."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="addresses")
    role = models.CharField(max_length=8, choices=AddressRole.choices)
    name = models.CharField(max_length=300, blank=True)
    address = models.CharField(max_length=254)
    domain = models.CharField(max_length=253)

    class Meta:
        indexes = [models.Index(fields=["address"]), models.Index(fields=["domain"])]

    def __str__(self) -> str:
        return f"{self.role}: {self.address}"


class MessageLink(models.Model):
    """A message concerns a record (matched on an address, or inherited through its thread)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="links")
    record = models.ForeignKey(Record, on_delete=models.CASCADE, related_name="message_links")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "record"], name="message_link_unique"),
        ]
        indexes = [models.Index(fields=["record", "message"])]

    def __str__(self) -> str:
        return f"message {self.message_id} → record {self.record_id}"


class StoredBlob(models.Model):
    """Attachment content, stored once per SHA-256 through Django's storage API."""

    sha256 = models.CharField(max_length=64, unique=True)
    size = models.PositiveBigIntegerField()
    file = models.FileField(upload_to="blobs/")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.sha256


class Attachment(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    blob = models.ForeignKey(StoredBlob, on_delete=models.PROTECT, related_name="attachments")
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField()
    content_id = models.CharField(max_length=255, blank=True)
    is_inline = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.filename


class SystemSender(models.Model):
    """The organisation's own sender for workflow notifications (not any user's mailbox).

    Its outgoing server settings mirror a Mailbox's, so ``mailboxes.smtp.SmtpAccount.of`` reads
    either; the password is encrypted at rest like a mailbox's.
    """

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="system_sender"
    )
    name = models.CharField(_("sender name"), max_length=200)
    address = models.CharField(_("sender address"), max_length=254)
    smtp_host = models.CharField(_("outgoing server"), max_length=253)
    smtp_port = models.PositiveIntegerField(_("outgoing port"), default=465)
    smtp_security = models.CharField(
        _("outgoing security"), max_length=10, choices=Security.choices, default=Security.SSL
    )
    smtp_username = models.CharField(_("outgoing user name"), max_length=254, blank=True)
    smtp_password_token = models.TextField(editable=False, blank=True)
    accept_self_signed = models.BooleanField(_("accept a self-signed certificate"), default=False)
    is_active = models.BooleanField(_("active"), default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("system sender")
        constraints = [
            models.CheckConstraint(
                condition=Q(smtp_port__gte=1, smtp_port__lte=65535),
                name="system_sender_port_in_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.address}>"

    def set_smtp_password(self, password: str) -> None:
        self.smtp_password_token = encrypt_secret(password)

    def smtp_credentials(self) -> tuple[str, str]:
        return self.smtp_username, decrypt_secret(self.smtp_password_token)
