from __future__ import annotations

from typing import Any

from django.http import HttpRequest


def organization(request: HttpRequest) -> dict[str, Any]:
    """The signed-in user's membership and organisation, for the base layout."""
    user = getattr(request, "user", None)
    membership = (
        getattr(user, "membership", None) if user is not None and user.is_authenticated else None
    )
    return {
        "membership": membership,
        "organization": membership.organization if membership else None,
    }
