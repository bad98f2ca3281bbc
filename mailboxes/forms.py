"""Mailbox account forms: add, edit (without passwords), and the two change-password forms."""

from __future__ import annotations

import logging
from typing import Any

from django import forms
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from mailboxes.hostcheck import validate_host_syntax
from mailboxes.models import DeletionPolicy, FirstImportScope, Mailbox, Security
from mailboxes.providers import provider_for_address
from records.addresses import InvalidAddress, normalize_address
from sharing.models import Permission

# format_lazy, not an f-string: the labels are joined when a form renders, in the reader's
# language, not once at import in the server's.
SHARING_CHOICES = [
    (value, format_lazy("{}: {}", label, help_text))
    for (value, label), help_text in zip(
        Permission.choices,
        [
            _("only you"),
            _("admins see your mail about records"),
            _("everyone sees your mail about records"),
            _("everyone sees the mail of records marked “share emails”"),
        ],
        strict=True,
    )
]

logger = logging.getLogger(__name__)

MAX_DELETE_AFTER_DAYS = 3650
MAX_FIRST_IMPORT_NEWEST = 1_000_000

SETTINGS_FIELDS = [
    "name",
    "email_address",
    "pop3_host",
    "pop3_port",
    "pop3_security",
    "pop3_username",
    "smtp_same_credentials",
    "smtp_host",
    "smtp_port",
    "smtp_security",
    "smtp_username",
    "deletion_policy",
    "delete_after_days",
    "first_import_scope",
    "first_import_since",
    "first_import_newest",
    "accept_self_signed",
]


class MailboxSettingsForm(forms.ModelForm):
    """Every setting but the passwords. ``accept_self_signed`` is only for admins."""

    class Meta:
        model = Mailbox
        fields = SETTINGS_FIELDS
        widgets = {
            "first_import_since": forms.DateInput(attrs={"type": "date"}),
            "pop3_security": forms.RadioSelect,
            "smtp_security": forms.RadioSelect,
        }
        help_texts = {
            "pop3_username": _(
                "Usually your full email address. Gmail: see the note above about recent:."
            ),
            "deletion_policy": _(
                "RecruitMail deletes a message from the server only after it is safely stored here."
            ),
        }

    def __init__(self, *args: Any, is_admin: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.is_admin = is_admin
        if not is_admin:
            del self.fields["accept_self_signed"]
        for name in ("pop3_port", "smtp_port"):
            self.fields[name].widget.attrs.update({"min": 1, "max": 65535})
        self.fields["smtp_host"].required = False
        self.fields["smtp_port"].required = False
        self.fields["pop3_host"].error_messages["required"] = _(
            "Enter the incoming (POP3) server, for example pop.gmail.com."
        )
        self.fields["email_address"].error_messages["required"] = _(
            "Enter the mailbox's email address."
        )

    def clean_email_address(self) -> str:
        try:
            return normalize_address(self.cleaned_data["email_address"])
        except InvalidAddress as exc:
            raise forms.ValidationError(str(exc)) from exc

    def _clean_host(self, name: str) -> str:
        value = self.cleaned_data.get(name) or ""
        if not value:
            return ""
        try:
            return validate_host_syntax(value)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean_pop3_host(self) -> str:
        host = self._clean_host("pop3_host")
        if not host:
            raise forms.ValidationError(
                _("Enter the incoming (POP3) server, for example pop.gmail.com.")
            )
        return host

    def clean_smtp_host(self) -> str:
        return self._clean_host("smtp_host")

    def _clean_port(self, name: str) -> int | None:
        port = self.cleaned_data.get(name)
        if port is not None and not 1 <= port <= 65535:
            raise forms.ValidationError(_("A port is a number from 1 to 65535."))
        return port

    def clean_pop3_port(self) -> int | None:
        return self._clean_port("pop3_port")

    def clean_smtp_port(self) -> int | None:
        return self._clean_port("smtp_port")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        address = data.get("email_address")
        provider = provider_for_address(address) if address else None
        # Pre-fill the outgoing server for known providers when left empty (always editable).
        if not data.get("smtp_host"):
            if provider is not None:
                data["smtp_host"] = provider.smtp_host
                data["smtp_port"] = data.get("smtp_port") or provider.smtp_port
                data["smtp_security"] = provider.smtp_security
            else:
                self.add_error(
                    "smtp_host", _("Enter the outgoing (SMTP) server, for example smtp.gmail.com.")
                )
        if data.get("smtp_port") is None and "smtp_port" not in self.errors:
            data["smtp_port"] = 465 if data.get("smtp_security") == Security.SSL else 587
        if not data.get("smtp_same_credentials") and not data.get("smtp_username"):
            self.add_error(
                "smtp_username",
                _("Enter the outgoing user name, or tick “use the same credentials”."),
            )
        policy = data.get("deletion_policy")
        days = data.get("delete_after_days")
        if policy == DeletionPolicy.AFTER_DAYS:
            if not days or not 1 <= days <= MAX_DELETE_AFTER_DAYS:
                self.add_error("delete_after_days", _("Enter a number of days from 1 to 3650."))
        else:
            data["delete_after_days"] = None
        scope = data.get("first_import_scope")
        if scope == FirstImportScope.SINCE_DATE and not data.get("first_import_since"):
            self.add_error("first_import_since", _("Choose the date from which to import mail."))
        if scope == FirstImportScope.NEWEST:
            newest = data.get("first_import_newest")
            if not newest or not 1 <= newest <= MAX_FIRST_IMPORT_NEWEST:
                self.add_error(
                    "first_import_newest", _("Enter how many of the newest messages to import.")
                )
        if data.get("pop3_security") == Security.NONE and data.get("pop3_port") == 995:
            self.add_error(
                "pop3_security", _("Port 995 expects SSL/TLS. Choose SSL/TLS, or another port.")
            )
        return data


class PasswordField(forms.CharField):
    """A password input that is never rendered back into the page."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("strip", False)
        kwargs.setdefault("max_length", 512)
        super().__init__(
            widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
            **kwargs,
        )


class MailboxCreateForm(MailboxSettingsForm):
    pop3_password = PasswordField(
        label=_("Password"), help_text=_("If two-step sign-in is on, use an app password.")
    )
    smtp_password = PasswordField(label=_("Outgoing password"), required=False)
    sharing_permission = forms.ChoiceField(
        label=_("Who else sees this mailbox's mail"),
        choices=SHARING_CHOICES,
        initial="private",
        required=False,
        widget=forms.RadioSelect,
        help_text=_(
            "Private is the default. You can change this later on the mailbox's Sharing page."
        ),
    )
    make_active = forms.BooleanField(
        label=_("Make this my active mailbox"),
        required=False,
        initial=True,
        help_text=_("Only your active mailbox is polled and used to send mail."),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        data["sharing_permission"] = data.get("sharing_permission") or Permission.PRIVATE
        if not data.get("smtp_same_credentials") and not data.get("smtp_password"):
            self.add_error(
                "smtp_password",
                _("Enter the outgoing password, or tick “use the same credentials”."),
            )
        return data


class ChangePasswordForm(forms.Form):
    password = PasswordField(label=_("New password"))
    confirm = PasswordField(label=_("New password again"))

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("password") and data.get("password") != data.get("confirm"):
            self.add_error("confirm", _("The two passwords differ."))
        return data
