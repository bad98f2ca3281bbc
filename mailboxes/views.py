"""Mailbox settings pages: list, add, edit, switch active, change passwords, delete."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.db import IntegrityError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from mailboxes.forms import (
    SETTINGS_FIELDS,
    ChangePasswordForm,
    MailboxCreateForm,
    MailboxSettingsForm,
)
from mailboxes.models import Mailbox, MailboxStatus, ServerMessageState
from mailboxes.pop3 import test_pop3_connection
from mailboxes.providers import PROVIDERS
from mailboxes.services import (
    mailbox_activate,
    mailbox_create,
    mailbox_delete,
    mailbox_set_pop3_password,
    mailbox_set_smtp_password,
    mailbox_update,
    quarantine_retry,
)
from mailboxes.smtp import test_smtp_connection
from mailboxes.tasks import poll_enqueue
from records.access import member_required, membership_of

logger = logging.getLogger(__name__)


def own_mailboxes(request: HttpRequest) -> QuerySet[Mailbox]:
    """The signed-in user's mailboxes; anyone else's id is a 404 (hidden and missing look alike)."""
    return Mailbox.objects.owned_by(request.user)


def _settings_data(form: MailboxSettingsForm) -> dict:
    return {name: form.cleaned_data[name] for name in SETTINGS_FIELDS if name in form.fields}


def _provider_presets() -> list[dict[str, object]]:
    return [provider.as_dict() for provider in PROVIDERS]


@member_required
def mailbox_list(request: HttpRequest) -> HttpResponse:
    mailboxes = own_mailboxes(request).order_by("-is_active", "name")
    return render(request, "mailboxes/mailbox_list.html", {"mailboxes": mailboxes})


@member_required
def mailbox_add(request: HttpRequest) -> HttpResponse:
    membership = membership_of(request)
    form = MailboxCreateForm(request.POST or None, is_admin=membership.is_admin)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            mailbox = mailbox_create(
                owner=request.user,
                settings_data=_settings_data(form),
                pop3_password=data["pop3_password"],
                smtp_password=data.get("smtp_password") or "",
                make_active=data["make_active"],
                sharing_permission=data["sharing_permission"],
            )
        except IntegrityError:
            logger.warning(
                "mailbox add conflicted with a concurrent change: user=%s", request.user.pk
            )
            form.add_error(
                None, _("Your mailboxes changed while you were saving. Please try again.")
            )
        else:
            messages.success(request, _("Mailbox %(name)s added.") % {"name": mailbox.name})
            return redirect("mailboxes:detail", pk=mailbox.pk)
    return render(
        request,
        "mailboxes/mailbox_form.html",
        {"form": form, "presets": _provider_presets(), "adding": True},
    )


@member_required
def mailbox_detail(request: HttpRequest, pk: int) -> HttpResponse:
    mailbox = get_object_or_404(own_mailboxes(request), pk=pk)
    reports = mailbox.poll_reports.all()[:10]
    quarantined = mailbox.server_messages.filter(state=ServerMessageState.QUARANTINED).order_by(
        "first_seen_at"
    )[:100]
    return render(
        request,
        "mailboxes/mailbox_detail.html",
        {"mailbox": mailbox, "reports": reports, "quarantined": quarantined},
    )


@member_required
@require_POST
def mailbox_fetch_now(request: HttpRequest, pk: int) -> HttpResponse:
    mailbox = get_object_or_404(own_mailboxes(request), pk=pk)
    if mailbox.is_polling_stopped:
        messages.error(
            request,
            _(
                "Polling is stopped because the server rejected the password. Change the incoming password first."
            ),
        )
    elif mailbox.status == MailboxStatus.PAUSED:
        messages.error(request, _("This mailbox is paused, so RecruitMail does not poll it."))
    elif not mailbox.is_active:
        messages.error(
            request, _("Only the active mailbox is polled. Make this mailbox active first.")
        )
    else:
        poll_enqueue(mailbox=mailbox)
        messages.success(request, _("Fetching mail now. The report below updates when it is done."))
    return redirect("mailboxes:detail", pk=mailbox.pk)


@member_required
def mailbox_poll_status(request: HttpRequest, pk: int) -> JsonResponse:
    """The latest poll's progress, for "Fetch now": imported so far of how many."""
    mailbox = get_object_or_404(own_mailboxes(request), pk=pk)
    report = mailbox.poll_reports.order_by("-started_at", "-pk").first()
    if report is None:
        return JsonResponse({"state": "none", "status": mailbox.get_status_display()})
    return JsonResponse(
        {
            "id": report.pk,
            "state": "running" if report.finished_at is None else "finished",
            "started_at": report.started_at.isoformat(),
            "on_server": report.on_server,
            "new": report.new,
            "imported": report.imported,
            "duplicates": report.duplicates,
            "failed": report.failed,
            "outcome": report.get_outcome_display() if report.finished_at else "",
            "error": report.error_message,
            "status": mailbox.get_status_display(),
        }
    )


@member_required
@require_POST
def mailbox_test_connection(request: HttpRequest, pk: int) -> HttpResponse:
    mailbox = get_object_or_404(own_mailboxes(request), pk=pk)
    result = test_pop3_connection(
        host=mailbox.pop3_host,
        port=mailbox.pop3_port,
        security=mailbox.pop3_security,
        username=mailbox.pop3_username,
        password=mailbox.pop3_password(),
        accept_self_signed=mailbox.accept_self_signed,
    )
    if result.ok:
        messages.success(request, result.message)
    else:
        messages.error(request, result.message)
    return redirect("mailboxes:detail", pk=mailbox.pk)


@member_required
@require_POST
def mailbox_test_smtp(request: HttpRequest, pk: int) -> HttpResponse:
    """Sign in to the outgoing server (EHLO, STARTTLS, AUTH, QUIT): no mail is sent."""
    mailbox = get_object_or_404(own_mailboxes(request), pk=pk)
    result = test_smtp_connection(mailbox)
    (messages.success if result.ok else messages.error)(request, result.message)
    return redirect("mailboxes:detail", pk=mailbox.pk)


@member_required
@require_POST
def mailbox_quarantine_retry(request: HttpRequest, pk: int) -> HttpResponse:
    mailbox = get_object_or_404(own_mailboxes(request), pk=pk)
    ids = [int(value) for value in request.POST.getlist("server_message") if value.isdigit()]
    count = quarantine_retry(mailbox=mailbox, server_message_ids=ids)
    messages.success(
        request, _("%(count)d messages will be tried again on the next poll.") % {"count": count}
    )
    return redirect("mailboxes:detail", pk=mailbox.pk)


@member_required
def mailbox_edit(request: HttpRequest, pk: int) -> HttpResponse:
    membership = membership_of(request)
    mailbox = get_object_or_404(own_mailboxes(request), pk=pk)
    form = MailboxSettingsForm(request.POST or None, instance=mailbox, is_admin=membership.is_admin)
    if request.method == "POST" and form.is_valid():
        mailbox_update(
            mailbox=Mailbox.objects.get(pk=mailbox.pk), settings_data=_settings_data(form)
        )
        messages.success(request, _("Settings saved. Your stored passwords were kept."))
        return redirect("mailboxes:detail", pk=mailbox.pk)
    return render(
        request,
        "mailboxes/mailbox_form.html",
        {"form": form, "mailbox": mailbox, "presets": _provider_presets(), "adding": False},
    )


def _change_password(request: HttpRequest, pk: int, *, which: str) -> HttpResponse:
    mailbox = get_object_or_404(own_mailboxes(request), pk=pk)
    form = ChangePasswordForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if which == "incoming":
            mailbox_set_pop3_password(mailbox=mailbox, password=form.cleaned_data["password"])
            messages.success(request, _("Incoming password changed."))
        else:
            mailbox_set_smtp_password(mailbox=mailbox, password=form.cleaned_data["password"])
            messages.success(request, _("Outgoing password changed."))
        return redirect("mailboxes:detail", pk=mailbox.pk)
    return render(
        request,
        "mailboxes/change_password.html",
        {"form": form, "mailbox": mailbox, "which": which},
    )


@member_required
def change_incoming_password(request: HttpRequest, pk: int) -> HttpResponse:
    return _change_password(request, pk, which="incoming")


@member_required
def change_outgoing_password(request: HttpRequest, pk: int) -> HttpResponse:
    return _change_password(request, pk, which="outgoing")


@member_required
@require_POST
def mailbox_make_active(request: HttpRequest, pk: int) -> HttpResponse:
    mailbox = get_object_or_404(own_mailboxes(request), pk=pk)
    mailbox_activate(mailbox=mailbox)
    messages.success(request, _("%(name)s is now your active mailbox.") % {"name": mailbox.name})
    target = request.POST.get("next", "")
    # Only a path on this site: "//evil.example" or "https://…" would be an open redirect.
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect("mailboxes:list")


@member_required
def mailbox_remove(request: HttpRequest, pk: int) -> HttpResponse:
    mailbox = get_object_or_404(own_mailboxes(request), pk=pk)
    if request.method == "POST":
        mailbox_delete(mailbox=mailbox)
        messages.success(request, _("Mailbox removed. Its mail stays in RecruitMail."))
        return redirect("mailboxes:list")
    return render(request, "mailboxes/mailbox_confirm_delete.html", {"mailbox": mailbox})
