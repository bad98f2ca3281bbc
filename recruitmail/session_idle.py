"""Idle expiry of sign-ins.

``SESSION_COOKIE_AGE`` bounds how long a sign-in lasts at all; ``SESSION_IDLE_SECONDS`` signs
out a session that has not been used for that long (a browser left open on a shared desk).
The time of the last request is kept in the session, written at most once a minute so that
pages that poll (fetch progress) do not write the session on every request.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext

LAST_ACTIVITY_KEY = "recruitmail_last_activity"
# How stale the stored time may get before it is written again: the idle limit is exact to
# within this.
TOUCH_EVERY_SECONDS = 60


def session_activity_start(sender: object, request: HttpRequest, **kwargs: object) -> None:
    """Signing in counts as activity (``user_logged_in`` receiver): the session is saved at
    sign-in anyway, so the first pages after it need not write it again."""
    if request is not None and hasattr(request, "session"):
        request.session[LAST_ACTIVITY_KEY] = int(time.time())


class IdleSessionMiddleware:
    """Sign out a session unused for ``SESSION_IDLE_SECONDS``; login_required then sends the
    user to the sign-in page, which says why."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            now = int(time.time())
            last = request.session.get(LAST_ACTIVITY_KEY)
            if isinstance(last, int) and now - last > settings.SESSION_IDLE_SECONDS:
                logout(request)
                messages.info(
                    request,
                    gettext(
                        "You were signed out after a time without activity. Please sign in again."
                    ),
                )
            elif not isinstance(last, int) or now - last >= TOUCH_EVERY_SECONDS:
                request.session[LAST_ACTIVITY_KEY] = now
        return self.get_response(request)
