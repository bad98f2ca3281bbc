"""The mailbox owner's sharing page, and the admin's locks, hand-overs and audit trail."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from mailboxes.models import Mailbox
from records.access import admin_required, member_required, membership_of
from records.models import Membership
from sharing.forms import ALWAYS_TRUE, SharingForm
from sharing.models import DATA_PROTECTION_ACTIONS, AuditAction, SharingAuditEntry
from sharing.selectors import member_mail_rows
from sharing.services import (
    SharingLocked,
    audit_add,
    mail_hand_over,
    member_mail_lock,
    sharing_for,
    sharing_preview,
    sharing_update,
)

logger = logging.getLogger(__name__)


@member_required
def mailbox_sharing(request: HttpRequest, pk: int) -> HttpResponse:
    mailbox = get_object_or_404(Mailbox.objects.owned_by(request.user), pk=pk)
    sharing = sharing_for(mailbox)
    initial = {
        "permission": sharing.permission,
        "excluded_domains": "\n".join(
            sharing.excluded_domains.order_by("domain").values_list("domain", flat=True)
        ),
        "consolidate_client_mail": sharing.consolidate_client_mail,
    }
    form = SharingForm(request.POST or None, initial=initial, locked=sharing.locked)
    preview = None
    if request.method == "POST":
        if not form.is_valid():
            if form.has_error("permission"):
                logger.warning(
                    "refused sharing change: mailbox=%s user=%s errors=%s",
                    mailbox.pk,
                    request.user.pk,
                    form.errors.get_json_data(),
                )
                if sharing.locked:
                    audit_add(
                        mailbox=mailbox,
                        actor=request.user,
                        action=AuditAction.TAMPERED,
                        old=sharing.permission,
                        new=str(request.POST.get("permission", ""))[:20],
                    )
        else:
            data = form.cleaned_data
            settings_kwargs = {
                "permission": data["permission"],
                "excluded_domains": data["excluded_domains"],
                "consolidate": data["consolidate_client_mail"],
            }
            if "preview" in request.POST:
                preview = sharing_preview(mailbox=mailbox, **settings_kwargs)
            else:
                try:
                    sharing_update(mailbox=mailbox, actor=request.user, **settings_kwargs)
                except SharingLocked:
                    form.add_error(
                        "permission",
                        _(
                            "An admin locked your mail settings: you cannot switch this mailbox to Private."
                        ),
                    )
                else:
                    messages.success(
                        request,
                        _("Sharing saved. Colleagues see the change on their next page load."),
                    )
                    return redirect("mailboxes:detail", pk=mailbox.pk)
    return render(
        request,
        "sharing/mailbox_sharing.html",
        {
            "mailbox": mailbox,
            "sharing": sharing,
            "form": form,
            "preview": preview,
            "always_true": ALWAYS_TRUE,
        },
    )


@admin_required
def admin_mail_settings(request: HttpRequest) -> HttpResponse:
    organization = membership_of(request).organization
    members = member_mail_rows(organization)
    return render(request, "sharing/admin_mail_settings.html", {"members": members})


@admin_required
@require_POST
def admin_lock(request: HttpRequest, pk: int) -> HttpResponse:
    organization = membership_of(request).organization
    member = get_object_or_404(
        Membership.objects.select_related("user"), organization=organization, pk=pk
    )
    locked = request.POST.get("locked") == "1"
    member_mail_lock(membership=member, actor=request.user, locked=locked)
    messages.success(
        request,
        (
            _("Mail settings of %(name)s locked.")
            if locked
            else _("Mail settings of %(name)s unlocked.")
        )
        % {"name": member.user},
    )
    return redirect("sharing:admin")


@admin_required
@require_POST
def admin_hand_over(request: HttpRequest) -> HttpResponse:
    organization = membership_of(request).organization
    members = Membership.objects.filter(organization=organization).select_related("user")
    source = get_object_or_404(
        members, pk=request.POST.get("from") if str(request.POST.get("from", "")).isdigit() else 0
    )
    target = get_object_or_404(
        members, pk=request.POST.get("to") if str(request.POST.get("to", "")).isdigit() else 0
    )
    if source.pk == target.pk or not target.user.is_active:
        messages.error(request, _("Choose two different people; the new owner must be active."))
        return redirect("sharing:admin")
    moved = mail_hand_over(from_user=source.user, to_user=target.user, actor=request.user)
    messages.success(
        request,
        _("%(count)d messages of %(old)s now belong to %(new)s.")
        % {"count": moved, "old": source.user, "new": target.user},
    )
    return redirect("sharing:admin")


@admin_required
def audit_trail(request: HttpRequest) -> HttpResponse:
    from records.views import paginate

    organization = membership_of(request).organization
    entries = SharingAuditEntry.objects.filter(organization=organization).select_related(
        "actor", "subject_user", "mailbox"
    )
    return render(
        request,
        "sharing/audit_trail.html",
        {
            "page": paginate(request, entries, 50),
            "data_protection_actions": [str(action) for action in DATA_PROTECTION_ACTIONS],
        },
    )
