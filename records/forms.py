"""Forms for records and members. They validate; services write."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib.auth.password_validation import validate_password
from django.utils.translation import gettext_lazy as _

from records.addresses import InvalidAddress, normalize_address
from records.models import (
    Candidate,
    Client,
    Contact,
    Membership,
    Organization,
    Record,
    RecordAddress,
    Role,
    User,
)

MAX_ADDRESSES_PER_RECORD = 20


class AddressListField(forms.CharField):
    """Email addresses, one per line (commas and semicolons also separate); returns normalised ones."""

    widget = forms.Textarea(attrs={"rows": 3, "placeholder": "taro.yamada@example.jp"})

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value)
        items = [item for item in re.split(r"[\s,;]+", text or "") if item]
        if len(items) > MAX_ADDRESSES_PER_RECORD:
            raise forms.ValidationError(
                _("A record can have at most %(max)d addresses."),
                params={"max": MAX_ADDRESSES_PER_RECORD},
            )
        normalised, errors = [], []
        for item in items:
            try:
                normalised.append(normalize_address(item))
            except InvalidAddress:
                errors.append(
                    forms.ValidationError(
                        _("“%(value)s” is not an email address."), params={"value": item}
                    )
                )
        if errors:
            raise forms.ValidationError(errors)
        return list(dict.fromkeys(normalised))


class RecordForm(forms.ModelForm):
    addresses = AddressListField(
        label=_("Email addresses"),
        required=False,
        help_text=_("One per line. Removing one keeps the mail already linked to it."),
    )

    def __init__(self, *args: Any, organization: Organization, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.organization = organization
        self.fields["owner"].queryset = User.objects.filter(
            membership__organization=organization, is_active=True
        ).order_by("full_name")
        self.fields["owner"].empty_label = None
        if self.instance.pk and not self.is_bound:
            self.initial["addresses"] = "\n".join(
                self.instance.addresses.current()
                .order_by("added_at")
                .values_list("address", flat=True)
            )

    def clean_addresses(self) -> list[str]:
        addresses: list[str] = self.cleaned_data["addresses"]
        kind = self._meta.model.KIND
        taken = (
            RecordAddress.objects.current()
            .filter(organization=self.organization, kind=kind, address__in=addresses)
            .select_related("record")
        )
        if self.instance.pk:
            taken = taken.exclude(record_id=self.instance.pk)
        errors = [
            forms.ValidationError(
                _("%(address)s already belongs to %(record)s."),
                params={"address": row.address, "record": row.record.display_name},
            )
            for row in taken
        ]
        if errors:
            raise forms.ValidationError(errors)
        return addresses


class ClientForm(RecordForm):
    website = forms.URLField(label=_("Website"), required=False, assume_scheme="https")

    class Meta:
        model = Client
        fields = ["name", "website", "owner", "share_emails", "notes"]


class ContactForm(RecordForm):
    class Meta:
        model = Contact
        fields = [
            "first_name",
            "last_name",
            "company",
            "job_title",
            "phone",
            "owner",
            "share_emails",
            "notes",
        ]

    def __init__(self, *args: Any, organization: Organization, **kwargs: Any) -> None:
        super().__init__(*args, organization=organization, **kwargs)
        self.fields["company"].queryset = Client.objects.filter(organization=organization).order_by(
            "name"
        )


class CandidateForm(RecordForm):
    class Meta:
        model = Candidate
        fields = ["first_name", "last_name", "headline", "phone", "owner", "share_emails", "notes"]


RECORD_FORMS: dict[type[Record], type[RecordForm]] = {
    Client: ClientForm,
    Contact: ContactForm,
    Candidate: CandidateForm,
}


class MemberAddForm(forms.Form):
    email = forms.EmailField(label=_("Email address"))
    full_name = forms.CharField(label=_("Name"), max_length=200)
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices, initial=Role.RECRUITER)
    password = forms.CharField(
        label=_("Initial password"),
        required=False,
        widget=forms.PasswordInput,
        help_text=_("Leave empty to send an invitation link instead."),
    )

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError(_("A user with this email address already exists."))
        return email

    def clean_password(self) -> str:
        password = self.cleaned_data.get("password") or ""
        if password:
            validate_password(password)
        return password


class MemberRoleForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["role"]


class ProfileForm(forms.ModelForm):
    class Meta:
        model = User
        fields = ["full_name", "language", "time_zone"]

    def clean_time_zone(self) -> str:
        import zoneinfo

        value = self.cleaned_data["time_zone"]
        if value not in zoneinfo.available_timezones():
            raise forms.ValidationError(
                _("Choose a time zone such as Asia/Tokyo or Europe/London.")
            )
        return value
