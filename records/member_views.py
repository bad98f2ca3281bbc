"""Signing in, one's own profile, and the admin's member management."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import send_mail
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from records.access import admin_required, member_required, membership_of
from records.forms import MemberAddForm, MemberRoleForm, ProfileForm
from records.models import Membership, User
from records.services import member_add, member_set_active, member_set_role

logger = logging.getLogger(__name__)


@member_required
def home(request: HttpRequest) -> HttpResponse:
    return redirect("records:candidate_list")


@member_required
def profile(request: HttpRequest) -> HttpResponse:
    form = ProfileForm(request.POST or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        # Confirm in the language just chosen (none: the browser's), which the next page speaks.
        with translation.override(user.language or translation.get_language_from_request(request)):
            messages.success(request, _("Your settings were saved."))
        return redirect("profile")
    return render(request, "records/profile.html", {"form": form})


def invitation_link(request: HttpRequest, user: User) -> str:
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    return request.build_absolute_uri(reverse("password_reset_confirm", args=[uid, token]))


@admin_required
def member_list(request: HttpRequest) -> HttpResponse:
    membership = membership_of(request)
    members = (
        Membership.objects.filter(organization=membership.organization)
        .select_related("user")
        .order_by("user__full_name")
    )
    return render(
        request, "records/member_list.html", {"members": members, "add_form": MemberAddForm()}
    )


@admin_required
def member_create(request: HttpRequest) -> HttpResponse:
    organization = membership_of(request).organization
    form = MemberAddForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        added = member_add(
            organization=organization,
            email=data["email"],
            full_name=data["full_name"],
            role=data["role"],
            password=data["password"] or None,
        )
        if data["password"]:
            messages.success(request, _("%(name)s can now sign in.") % {"name": added.user})
        else:
            link = invitation_link(request, added.user)
            send_mail(
                _("You are invited to RecruitMail"),
                _(
                    "%(admin)s invited you to %(org)s on RecruitMail. Choose your password here: %(link)s"
                )
                % {"admin": request.user, "org": organization, "link": link},
                None,
                [added.user.email],
            )
            messages.success(
                request,
                _("Invitation sent to %(email)s. You can also give them this link: %(link)s")
                % {"email": added.user.email, "link": link},
            )
        logger.info(
            "member added: org=%s user=%s by=%s", organization.pk, added.user.pk, request.user.pk
        )
        return redirect("member_list")
    return render(request, "records/member_form.html", {"form": form})


@admin_required
def member_edit(request: HttpRequest, pk: int) -> HttpResponse:
    organization = membership_of(request).organization
    member = get_object_or_404(
        Membership.objects.select_related("user"), organization=organization, pk=pk
    )
    form = MemberRoleForm(request.POST or None, instance=member)
    if request.method == "POST" and form.is_valid():
        if member.user == request.user and form.cleaned_data["role"] != member.role:
            form.add_error("role", _("You cannot change your own role; ask another admin."))
        else:
            member_set_role(membership=member, role=form.cleaned_data["role"])
            messages.success(request, _("Role of %(name)s saved.") % {"name": member.user})
            return redirect("member_list")
    return render(request, "records/member_edit.html", {"form": form, "member": member})


@admin_required
@require_POST
def member_toggle_active(request: HttpRequest, pk: int) -> HttpResponse:
    organization = membership_of(request).organization
    member = get_object_or_404(
        Membership.objects.select_related("user"), organization=organization, pk=pk
    )
    if member.user == request.user:
        messages.error(request, _("You cannot deactivate yourself."))
    else:
        member_set_active(membership=member, active=not member.user.is_active)
        messages.success(request, _("Saved."))
    return redirect("member_list")
