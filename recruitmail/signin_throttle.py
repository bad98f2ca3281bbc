"""Sign-in throttling against password guessing (django-axes, configured in settings).

After ``AUTH_LOCKOUT_FAILURES`` wrong passwords for one email address from one client
address, that pair may not sign in for ``AUTH_LOCKOUT_SECONDS``, not even with the right
password. The counters are rows in the database (axes' database handler), so every web
process sees the same counts. Another user, or the same user from another address, is not
affected. Axes logs a warning naming the address and the client when it locks a pair out.

These are the hooks the settings name: how the email address is compared, where the
client's address comes from, and the page a locked-out client sees.
"""

from __future__ import annotations

import ipaddress
import math
from datetime import datetime
from typing import Any

from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Max
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone


def normalised_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str:
    """The email address as the lock counts it: trimmed and lower-cased, so that changing
    its case does not start a fresh count."""
    value = (credentials or {}).get("username")
    if value is None:
        value = request.POST.get("username", "")
    return str(value).strip().lower()


def client_ip_address(request: HttpRequest) -> str | None:
    """The client's address: the connection's peer, or, when ``CLIENT_IP_FROM_FORWARDED_FOR``
    says a proxy in front appends it, the last entry of ``X-Forwarded-For``.

    Only the last entry: the ones before it come from the client and can be anything. A value
    that is not an address is ignored rather than stored (PostgreSQL's inet column refuses it).
    """
    if settings.CLIENT_IP_FROM_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(forwarded))
        except ValueError:
            pass
    return request.META.get("REMOTE_ADDR")


def signin_lock_ends(*, username: str, ip_address: str | None) -> datetime:
    """When the lock on this (email address, client address) pair runs out.

    Attempts refused during the lock are not counted (``AXES_RESET_COOL_OFF_ON_FAILURE_DURING_
    LOCKOUT`` is off), so the lock ends one lock period after the failure that started it.
    """
    period = get_cool_off() or settings.AXES_COOLOFF_TIME
    last_failure = AccessAttempt.objects.filter(username=username, ip_address=ip_address).aggregate(
        last=Max("attempt_time")
    )["last"]
    return (last_failure or timezone.now()) + period


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | None,
    credentials: dict[str, Any] | None,
) -> HttpResponse:
    """The sign-in page again, saying in words that there were too many attempts and when to
    try again (429, with ``Retry-After``)."""
    username = get_client_username(request, credentials) or ""
    ends = signin_lock_ends(username=username, ip_address=getattr(request, "axes_ip_address", None))
    seconds = max(1, math.ceil((ends - timezone.now()).total_seconds()))
    form = AuthenticationForm(request, initial={"username": request.POST.get("username", "")})
    context = {
        "form": form,
        "next": request.POST.get("next", ""),
        "locked_until": ends,
        "lock_minutes": math.ceil(seconds / 60),
    }
    response = render(request, "registration/login.html", context, status=429)
    response["Retry-After"] = str(seconds)
    return response
