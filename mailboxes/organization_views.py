"""The admin's organisation settings page: poll interval, mail retention, the system sender."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from mailboxes.models import SystemSender
from mailboxes.organization_forms import OrganizationMailForm, SystemSenderForm
from mailboxes.smtp import test_smtp_connection
from records.access import admin_required, membership_of

logger = logging.getLogger(__name__)


@admin_required
def organization_settings(request: HttpRequest) -> HttpResponse:
    organization = membership_of(request).organization
    # As saved: binding the form writes the posted (maybe unconfirmed) value on the instance.
    retention_days = organization.mail_retention_days
    sender = SystemSender.objects.filter(organization=organization).first()
    posted = request.POST if request.method == "POST" else None
    org_form = OrganizationMailForm(posted, instance=organization, prefix="org")
    sender_form = SystemSenderForm(posted, instance=sender, prefix="sender")
    if posted is not None:
        org_ok = org_form.is_valid()
        # The sender is optional: an untouched, empty sender form is not an error.
        sender_wanted = any(
            posted.get(f"sender-{name}") for name in ("name", "address", "smtp_host")
        )
        sender_ok = not sender_wanted or sender_form.is_valid()
        if org_ok and sender_ok:
            with transaction.atomic():
                org_form.save()
                if sender_wanted:
                    saved = sender_form.save(commit=False)
                    saved.organization = organization
                    if sender_form.cleaned_data.get("password"):
                        saved.set_smtp_password(sender_form.cleaned_data["password"])
                    saved.save()
            logger.info(
                "organisation %s mail settings saved by user %s", organization.pk, request.user.pk
            )
            messages.success(request, _("Organisation settings saved."))
            return redirect("organization_settings")
    return render(
        request,
        "mailboxes/organization_settings.html",
        {
            "org_form": org_form,
            "sender_form": sender_form,
            "sender": sender,
            "retention_days": retention_days,
        },
    )


@admin_required
@require_POST
def system_sender_test(request: HttpRequest) -> HttpResponse:
    sender = SystemSender.objects.filter(organization=membership_of(request).organization).first()
    if sender is None:
        messages.error(request, _("Set up the system sender first."))
    else:
        result = test_smtp_connection(sender)
        (messages.success if result.ok else messages.error)(request, result.message)
    return redirect("organization_settings")
