"""Admins' pages for a candidate's data-protection requests: erase, and export the mail.

A candidate of another organisation is a 404 (the lookup starts from the admin's organisation);
a recruiter gets a 403 from ``admin_required``.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from records.access import admin_required, membership_of
from records.data_protection import (
    candidate_erase,
    candidate_erasure_plan,
    candidate_export_messages,
    candidate_export_record,
)
from records.mail_export import iter_nonempty, mbox_stream, zip_stream
from records.models import Candidate


def _candidate(request: HttpRequest, pk: int) -> Candidate:
    organization = membership_of(request).organization
    return get_object_or_404(Candidate.objects.filter(organization=organization), pk=pk)


@admin_required
@require_http_methods(["GET", "POST"])
def candidate_erase_view(request: HttpRequest, pk: int) -> HttpResponse:
    candidate = _candidate(request, pk)
    plan = candidate_erasure_plan(candidate=candidate)
    if request.method == "POST":
        # The page showed counts; if mail arrived or was linked since, show the new counts
        # instead of erasing something other than what the admin confirmed.
        shown = {key: request.POST.get(key, "") for key in plan.as_counts()}
        if shown != {key: str(value) for key, value in plan.as_counts().items()}:
            messages.warning(
                request, _("The mail of this candidate changed meanwhile: check the new counts.")
            )
        else:
            name = candidate.display_name
            candidate_erase(candidate=candidate, actor=request.user)
            messages.success(request, _("%(name)s has been erased.") % {"name": name})
            return redirect("records:candidate_list")
    return render(
        request,
        "records/candidate_erase.html",
        {"record": candidate, "plan": plan, "counts": plan.as_counts()},
    )


@admin_required
@require_http_methods(["GET", "POST"])
def candidate_export_view(request: HttpRequest, pk: int) -> HttpResponseBase:
    candidate = _candidate(request, pk)
    selected = candidate_export_messages(candidate=candidate)
    # A POST (not a link) starts the download: each one goes in the audit trail.
    wanted = request.POST.get("format") if request.method == "POST" else None
    if wanted not in ("mbox", "zip"):
        return render(
            request,
            "records/candidate_export.html",
            {"record": candidate, "message_count": selected.count()},
        )
    candidate_export_record(candidate=candidate, actor=request.user, messages=selected.count())
    stamp = timezone.now().strftime("%Y%m%d")
    if wanted == "mbox":
        response = StreamingHttpResponse(
            iter_nonempty(mbox_stream(selected)), content_type="application/mbox"
        )
        filename = f"candidate-{candidate.pk}-mail-{stamp}.mbox"
    else:
        response = StreamingHttpResponse(
            iter_nonempty(zip_stream(selected)), content_type="application/zip"
        )
        filename = f"candidate-{candidate.pk}-mail-{stamp}.zip"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response
