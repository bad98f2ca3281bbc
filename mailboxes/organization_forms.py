"""Organisation-wide mail settings an admin edits: the poll interval and the system sender."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from mailboxes.forms import PasswordField
from mailboxes.hostcheck import validate_host_syntax
from mailboxes.models import SystemSender
from records.addresses import InvalidAddress, normalize_address
from records.models import Organization

MIN_POLL_SECONDS = 60
MAX_POLL_SECONDS = 24 * 60 * 60


class OrganizationMailForm(forms.ModelForm):
    class Meta:
        model = Organization
        fields = ["name", "poll_interval_seconds"]
        help_texts = {
            "poll_interval_seconds": _(
                "How often each active mailbox is polled: 60 to 86400 seconds."
            )
        }

    def clean_poll_interval_seconds(self) -> int:
        value = self.cleaned_data["poll_interval_seconds"]
        if not MIN_POLL_SECONDS <= value <= MAX_POLL_SECONDS:
            raise forms.ValidationError(_("Choose an interval from 60 seconds to one day (86400)."))
        return value


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
