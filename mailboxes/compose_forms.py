"""The compose form (new mail, reply, reply all, forward, send from a record page)."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from records.models import Record, User


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[Any]:
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(item, initial) for item in data if item]
        return [single(data, initial)] if data else []


def split_addresses(text: str) -> list[str]:
    """Addresses as typed, separated by commas, semicolons or new lines (names allowed)."""
    return [item.strip() for item in re.split(r"[,;\n]+", text or "") if item.strip()]


class ComposeForm(forms.Form):
    to = forms.CharField(label=_("To"), widget=forms.TextInput(attrs={"autocomplete": "email"}))
    cc = forms.CharField(label=_("Cc"), required=False)
    bcc = forms.CharField(label=_("Bcc"), required=False)
    subject = forms.CharField(label=_("Subject"), max_length=900, required=False)
    body = forms.CharField(
        label=_("Message"), widget=forms.Textarea(attrs={"rows": 14}), required=False
    )
    attachments = MultipleFileField(label=_("Attachments"), required=False)
    records = forms.ModelMultipleChoiceField(
        queryset=Record.objects.none(), required=False, widget=forms.MultipleHiddenInput
    )
    draft = forms.IntegerField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only records the writer can see: another organisation's id is simply not a choice.
        self.fields["records"].queryset = Record.objects.visible_to(user)

    def addresses(self, field: str) -> list[str]:
        return split_addresses(self.cleaned_data.get(field) or "")
