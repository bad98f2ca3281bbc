"""Who may use which page: membership of an organisation, and the admin role."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _

from records.models import Membership


def membership_of(request: HttpRequest) -> Membership:
    """The signed-in user's membership; a user without one may not use the app."""
    membership = getattr(request.user, "membership", None)
    if membership is None:
        raise PermissionDenied(_("You are not a member of an organisation."))
    return membership


def member_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        membership_of(request)
        return view(request, *args, **kwargs)

    return wrapped


def admin_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @member_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not membership_of(request).is_admin:
            raise PermissionDenied(_("Only an admin of your organisation can open this page."))
        return view(request, *args, **kwargs)

    return wrapped
