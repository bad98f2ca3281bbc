"""Record pages: lists with search and paging, detail, create and edit, scoped to the organisation."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Page
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _

from mailboxes.selectors import mail_navigation, record_mail_context
from records.access import member_required, membership_of
from records.forms import RECORD_FORMS
from records.models import Candidate, Client, Contact, Record, RecordAddress, RecordKind
from records.services import AddressTaken, record_save
from recruitmail.pagination import capped_page

PAGE_SIZE = 25
RECORD_MODELS: dict[str, type[Client] | type[Contact] | type[Candidate]] = {
    RecordKind.CLIENT: Client,
    RecordKind.CONTACT: Contact,
    RecordKind.CANDIDATE: Candidate,
}


def paginate(request: HttpRequest, queryset: QuerySet[Any], per_page: int = PAGE_SIZE) -> Page:
    """A page of ``queryset``; a missing, malformed or too-large page number gives a valid page."""
    return capped_page(queryset, per_page=per_page, number=request.GET.get("page"))


def _records_for(request: HttpRequest, kind: str) -> QuerySet[Any]:
    model = RECORD_MODELS[kind]
    visible_ids = Record.objects.visible_to(request.user).filter(kind=kind)
    return model.objects.filter(pk__in=visible_ids.values("pk"))


@member_required
def record_list(request: HttpRequest, kind: str) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:200]
    visible = Record.objects.visible_to(request.user).filter(kind=kind).search(query)
    model = RECORD_MODELS[kind]
    records = (
        model.objects.filter(pk__in=visible.values("pk"))
        .select_related("owner")
        .prefetch_related(
            Prefetch(
                "addresses",
                queryset=RecordAddress.objects.current().order_by("added_at"),
                to_attr="current_addresses",
            )
        )
        .order_by("display_name", "pk")
    )
    if kind == RecordKind.CONTACT:
        records = records.select_related("company")
    return render(
        request,
        "records/record_list.html",
        {"kind": kind, "model": model, "page": paginate(request, records), "query": query},
    )


@member_required
def record_detail(request: HttpRequest, kind: str, pk: int) -> HttpResponse:
    record = get_object_or_404(_records_for(request, kind).select_related("owner"), pk=pk)
    addresses = record.addresses.order_by("removed_at", "added_at")
    context: dict[str, Any] = {"kind": kind, "record": record, "addresses": addresses}
    if kind == RecordKind.CLIENT:
        context["contacts"] = record.contacts.order_by("display_name")[:100]
    mailnav = mail_navigation(request.user)  # the header's, and the active mailbox
    context["mailnav"] = mailnav
    context.update(
        record_mail_context(
            user=request.user,
            record=record,
            number=request.GET.get("page"),
            mailbox=mailnav.active,
        )
    )
    return render(request, "records/record_detail.html", context)


def _record_form_view(request: HttpRequest, kind: str, instance: Any | None) -> HttpResponse:
    membership = membership_of(request)
    model = RECORD_MODELS[kind]
    form_class = RECORD_FORMS[model]
    initial = {} if instance else {"owner": request.user.pk}
    form = form_class(
        request.POST or None,
        instance=instance,
        initial=initial,
        organization=membership.organization,
    )
    if request.method == "POST" and form.is_valid():
        try:
            record = record_save(
                record=form.save(commit=False),
                addresses=form.cleaned_data["addresses"],
                organization=membership.organization,
            )
        except AddressTaken as taken:
            form.add_error(
                "addresses",
                _("%(address)s already belongs to %(record)s.")
                % {"address": taken.address, "record": taken.record.display_name},
            )
        else:
            messages.success(request, _("Saved %(name)s.") % {"name": record.display_name})
            return redirect(record.get_absolute_url())
    return render(
        request,
        "records/record_form.html",
        {"kind": kind, "model": model, "form": form, "record": instance},
    )


@member_required
def record_create(request: HttpRequest, kind: str) -> HttpResponse:
    return _record_form_view(request, kind, None)


@member_required
def record_edit(request: HttpRequest, kind: str, pk: int) -> HttpResponse:
    record = get_object_or_404(_records_for(request, kind), pk=pk)
    return _record_form_view(request, kind, record)
