"""Organisation-wide mail settings an admin edits: poll interval, retention, system sender."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from mailboxes.forms import PasswordField
from mailboxes.hostcheck import validate_host_syntax
from mailboxes.models import SystemSender
from mailboxes.retention import expired_messages, retention_cutoff
from records.addresses import InvalidAddress, normalize_address
from records.models import Organization

MIN_POLL_SECONDS = 60
MAX_POLL_SECONDS = 24 * 60 * 60
# A floor, so that a slip of the keyboard ("1" for "100") cannot empty the hub overnight.
MIN_RETENTION_DAYS = 30
MAX_RETENTION_DAYS = 36500


class OrganizationMailForm(forms.ModelForm):
    # Shown only when a shorter retention period would delete mail at the next nightly run.
    confirm_retention = forms.BooleanField(
        label=_("Yes, delete that mail for good"),
        required=False,
    )

    class Meta:
        model = Organization
        fields = ["name", "poll_interval_seconds", "mail_retention_days"]
        help_texts = {
            "poll_interval_seconds": _(
                "How often each active mailbox is polled: 60 to 86400 seconds."
            ),
            "mail_retention_days": _(
                "Leave empty to keep mail for ever. Otherwise, every night, mail older than this "
                "many days (by its date) is deleted for good from every mailbox of the "
                "organisation, with its attachments. At least 30 days."
            ),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["mail_retention_days"].widget.attrs.update(
            {"min": MIN_RETENTION_DAYS, "max": MAX_RETENTION_DAYS}
        )
        self.expiring_messages = 0
        self.fields["confirm_retention"].widget = forms.HiddenInput()

    def clean_poll_interval_seconds(self) -> int:
        value = self.cleaned_data["poll_interval_seconds"]
        if not MIN_POLL_SECONDS <= value <= MAX_POLL_SECONDS:
            raise forms.ValidationError(_("Choose an interval from 60 seconds to one day (86400)."))
        return value

    def clean_mail_retention_days(self) -> int | None:
        value = self.cleaned_data["mail_retention_days"]
        if value is not None and not MIN_RETENTION_DAYS <= value <= MAX_RETENTION_DAYS:
            raise forms.ValidationError(
                _("Choose from 30 to 36500 days, or leave empty to keep mail for ever.")
            )
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        days = data.get("mail_retention_days")
        before = self.initial.get("mail_retention_days")
        shorter = days is not None and (before is None or days < before)
        if shorter and self.instance.pk:
            cutoff = retention_cutoff(days=days)
            assert cutoff is not None
            self.expiring_messages = expired_messages(
                organization=self.instance, cutoff=cutoff
            ).count()
            if self.expiring_messages and not data.get("confirm_retention"):
                self.fields["confirm_retention"].widget = forms.CheckboxInput()
                self.add_error(
                    "confirm_retention",
                    _(
                        "%(count)d messages are older than %(days)d days: they will be deleted "
                        "for good tonight. Tick the box to confirm."
                    )
                    % {"count": self.expiring_messages, "days": days},
                )
        return data


class SystemSenderForm(forms.ModelForm):
    """The notification sender. Leave the password empty to keep the stored one."""

    password = PasswordField(
        label=_("Outgoing password"),
        required=False,
        help_text=_("Leave empty to keep the stored password."),
    )

    class Meta:
        model = SystemSender
        fields = [
            "name",
            "address",
            "smtp_host",
            "smtp_port",
            "smtp_security",
            "smtp_username",
            "accept_self_signed",
            "is_active",
        ]
        widgets = {"smtp_security": forms.RadioSelect}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["smtp_port"].widget.attrs.update({"min": 1, "max": 65535})

    def clean_address(self) -> str:
        try:
            return normalize_address(self.cleaned_data["address"])
        except InvalidAddress as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean_smtp_host(self) -> str:
        try:
            return validate_host_syntax(self.cleaned_data["smtp_host"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean_smtp_port(self) -> int:
        port = self.cleaned_data["smtp_port"]
        if not 1 <= port <= 65535:
            raise forms.ValidationError(_("A port is a number from 1 to 65535."))
        return port

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not self.instance.pk and not data.get("password") and data.get("smtp_username"):
            self.add_error("password", _("Enter the password of the outgoing account."))
        return data
