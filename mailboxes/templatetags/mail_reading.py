"""Template tags of the mail reading pages: the header's mailbox switcher and folder links."""

from __future__ import annotations

from typing import Any

from django import template

from mailboxes.selectors import consolidates_client_mail, user_mailboxes

register = template.Library()


@register.simple_tag(takes_context=True)
def mail_navigation(context: template.Context) -> dict[str, Any]:
    """The signed-in member's mailboxes (one query), the active one, and whether the client
    folder is on for it. Use inside ``{% if membership %}``."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or getattr(user, "membership", None) is None:
        return {"mailboxes": [], "active": None, "client_folder": False}
    mailboxes = user_mailboxes(user)
    active = next((mailbox for mailbox in mailboxes if mailbox.is_active), None)
    return {
        "mailboxes": mailboxes,
        "active": active,
        "client_folder": consolidates_client_mail(active),
    }
