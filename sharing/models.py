"""Each mailbox's sharing settings: who else sees the mail it brings in."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from mailboxes.models import Mailbox

MAX_EXCLUDED_DOMAINS = 5


class Permission(models.TextChoices):
    PRIVATE = "private", _("Private (only me)")
    ADMIN = "admin", _("Admin (record mail shared with admins)")
    PUBLIC = "public", _("Public (record mail shared with everyone)")
    CUSTOM = "custom", _('Custom (mail of records whose "share emails" is ticked)')


class MailboxSharing(models.Model):
    """Sharing settings of one mailbox. Private is the default: no full-share default."""

    mailbox = models.OneToOneField(Mailbox, on_delete=models.CASCADE, related_name="sharing")
    permission = models.CharField(
        _("who else sees this mailbox's mail"),
        max_length=8,
        choices=Permission.choices,
        default=Permission.PRIVATE,
    )
    consolidate_client_mail = models.BooleanField(
        _("consolidate all client emails"),
        default=False,
    )
    locked = models.BooleanField(
        _("locked by an admin"),
        default=False,
        help_text=_("The owner cannot switch a locked mailbox to Private."),
    )
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.mailbox}: {self.permission}"

    @property
    def permission_label(self) -> str:
        """The permission's label in the active language. ``get_permission_display`` gives the
        same but translates every choice on each call (6 ms for the 100 mailboxes of the
        admin's mail settings page, bench/pages.py)."""
        try:
            return str(Permission(self.permission).label)
        except ValueError:  # not a choice: shown as stored, as get_permission_display does
            return self.permission


class ExcludedDomain(models.Model):
    """Public mailboxes do not share mail with a correspondent in this domain or its subdomains."""

    sharing = models.ForeignKey(
        MailboxSharing, on_delete=models.CASCADE, related_name="excluded_domains"
    )
    domain = models.CharField(max_length=253)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sharing", "domain"], name="excluded_domain_unique"),
        ]

    def __str__(self) -> str:
        return self.domain


class AuditAction(models.TextChoices):
    PERMISSION_CHANGED = "permission", _("Sharing permission changed")
    DOMAINS_CHANGED = "domains", _("Excluded domains changed")
    CONSOLIDATION_CHANGED = "consolidation", _("Client folder option changed")
    LOCKED = "locked", _("Mail settings locked")
    UNLOCKED = "unlocked", _("Mail settings unlocked")
    HANDED_OVER = "handover", _("Record mail handed over")
    TAMPERED = "tampered", _("Refused change (tampered or locked)")
    # Data protection (records.data_protection, mailboxes.retention): the trail is the
    # organisation's record of what it erased, exported and purged, so they are kept here too.
    RECORD_ERASED = "erased", _("Candidate erased")
    RECORD_EXPORTED = "exported", _("Candidate's mail exported")
    RETENTION_PURGED = "purged", _("Old mail deleted (retention)")


DATA_PROTECTION_ACTIONS = (
    AuditAction.RECORD_ERASED,
    AuditAction.RECORD_EXPORTED,
    AuditAction.RETENTION_PURGED,
)


class SharingAuditEntry(models.Model):
    """Who changed which sharing setting, when, from what to what. Shown to admins."""

    organization = models.ForeignKey(
        "records.Organization", on_delete=models.CASCADE, related_name="+"
    )
    actor = models.ForeignKey(
        "records.User", on_delete=models.SET_NULL, null=True, related_name="+"
    )
    subject_user = models.ForeignKey(
        "records.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    mailbox = models.ForeignKey(
        Mailbox, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    action = models.CharField(max_length=16, choices=AuditAction.choices)
    old_value = models.TextField(blank=True)
    new_value = models.TextField(blank=True)
    # The record an erase or export concerned, as it was named then: an erased record is gone.
    record_name = models.CharField(max_length=300, blank=True)
    # What an erase, export or purge did, as numbers ({"deleted": 3, ...}); shown in the
    # reader's language by details_display.
    counts = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["organization", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.action}"

    @property
    def old_value_display(self) -> str:
        return self._value_display(self.old_value)

    @property
    def new_value_display(self) -> str:
        return self._value_display(self.new_value)

    @property
    def details_display(self) -> str:
        """What an erase, export or purge did, in the reader's language ("" for other actions)."""
        counts = self.counts or {}
        if self.action == AuditAction.RECORD_ERASED:
            return _(
                "Messages deleted: %(deleted)d; kept for other records and unlinked: "
                "%(unlinked)d; attachments deleted: %(attachments)d; addresses deleted: "
                "%(addresses)d"
            ) % {
                "deleted": counts.get("deleted", 0),
                "unlinked": counts.get("unlinked", 0),
                "attachments": counts.get("attachments", 0),
                "addresses": counts.get("addresses", 0),
            }
        if self.action == AuditAction.RECORD_EXPORTED:
            return _("Messages exported: %(messages)d") % {"messages": counts.get("messages", 0)}
        if self.action == AuditAction.RETENTION_PURGED:
            return _("Messages older than %(days)d days deleted: %(messages)d") % {
                "messages": counts.get("messages", 0),
                "days": counts.get("days", 0),
            }
        return ""

    def _value_display(self, value: str) -> str:
        """A stored value as the admin reads it: permissions and on/off in the reader's language.

        Values are stored raw ("public", "True") so the trail stays exact whatever the language
        of the person who changed them.
        """
        if self.action in (AuditAction.PERMISSION_CHANGED, AuditAction.TAMPERED):
            if value in Permission.values:
                return str(Permission(value).label)
        elif self.action == AuditAction.CONSOLIDATION_CHANGED:
            if value in ("True", "False"):
                return str(_("On") if value == "True" else _("Off"))
        return value
