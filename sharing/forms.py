"""The sharing settings form: permission, excluded domains, consolidated client folder."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from sharing.domains import parse_excluded_domains
from sharing.models import MAX_EXCLUDED_DOMAINS, Permission

PERMISSION_HELP = {
    Permission.PRIVATE: _(
        "Only you see this mailbox's mail: colleagues see neither what you send nor what you receive."
    ),
    Permission.ADMIN: _("Admins see this mailbox's mail about records; other recruiters do not."),
    Permission.PUBLIC: _(
        "Everyone in your organisation sees this mailbox's mail about records, except mail with an excluded domain."
    ),
    Permission.CUSTOM: _(
        "Everyone sees the sent and received mail of records whose “share emails” box is ticked, and nothing else."
    ),
}
ALWAYS_TRUE = _(
    "Whatever you choose, you can read and reply to the mail colleagues share with you, and mail "
    "that concerns no record stays yours alone."
)


class SharingForm(forms.Form):
    permission = forms.ChoiceField(
        label=_("Who else sees this mailbox's mail"),
        choices=Permission.choices,
        widget=forms.RadioSelect,
        initial=Permission.PRIVATE,
    )
    excluded_domains = forms.CharField(
        label=_("Excluded domains"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "confidential-client.example"}),
    )
    consolidate_client_mail = forms.BooleanField(
        label=_("Consolidate all client emails"),
        required=False,
        help_text=_("Gather mail with clients and their contacts into your client folder."),
    )

    def __init__(self, *args: Any, locked: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.locked = locked
        # Formatted here, per request: "%" on a lazy string at import would freeze its language.
        self.fields["excluded_domains"].help_text = _(
            "Public only: mail with a correspondent in these domains (or their subdomains) is not shared. At most %(max)d."
        ) % {"max": MAX_EXCLUDED_DOMAINS}
        self.permission_help = [
            (value, label, PERMISSION_HELP[Permission(value)])
            for value, label in Permission.choices
        ]

    def clean_excluded_domains(self) -> list[str]:
        try:
            return parse_excluded_domains(self.cleaned_data.get("excluded_domains") or "")
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if (
            self.locked
            and data.get("permission") == Permission.PRIVATE
            and self.initial.get("permission") != Permission.PRIVATE
        ):
            self.add_error(
                "permission",
                _("An admin locked your mail settings: you cannot switch this mailbox to Private."),
            )
        return data
