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
