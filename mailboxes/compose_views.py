"""Compose, reply, reply all, forward and "send mail" from a record page, through the active
mailbox's SMTP server. Mail sent from the hub follows its records' visibility, and the form
says who will see it."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from mailboxes.compose_forms import ComposeForm
from mailboxes.composing import (
    MessageInvalid,
    attachments_of,
    forward_subject,
    forward_text,
    reply_quote,
    reply_recipients,
    reply_subject,
    reply_to_warning,
    user_zone,
)
from mailboxes.linking import records_for_addresses
from mailboxes.models import Mailbox, Message, SendState
from mailboxes.sending import message_compose, message_send
from mailboxes.services_mail import draft_discard
from records.access import member_required, membership_of
from records.addresses import try_normalize_address
from records.models import Record, User

logger = logging.getLogger(__name__)
MODES = ("reply", "reply_all", "forward")


def _parent(request: HttpRequest) -> tuple[str, Message | None]:
    """The message answered or forwarded, from ?reply= / ?reply_all= / ?forward= (visible only)."""
    for mode in MODES:
        value = request.GET.get(mode) or request.POST.get(f"parent_{mode}")
        if value:
            if not str(value).isdigit():
                raise Http404
            parent = (
                Message.objects.visible_to(request.user)
                .filter(pk=int(value), deleted_at__isnull=True)
                .first()
            )
            if parent is None:
                raise Http404
            return mode, parent
    return "", None


def _record_from_query(request: HttpRequest) -> Record | None:
    value = request.GET.get("record", "")
    if not value:
        return None
    if not value.isdigit():
        raise Http404
    record = Record.objects.visible_to(request.user).filter(pk=int(value)).first()
    if record is None:
        raise Http404
    return record


def _initial(
    user: User, mode: str, parent: Message | None, record: Record | None
) -> dict[str, Any]:
    initial: dict[str, Any] = {}
    zone = user_zone(user.time_zone)
    if parent is not None and mode in ("reply", "reply_all"):
        to, cc = reply_recipients(parent, reply_all=mode == "reply_all")
        initial.update(
            to=", ".join(to),
            cc=", ".join(cc),
            subject=reply_subject(parent.subject),
            body="\n\n" + reply_quote(parent, zone=zone),
        )
    elif parent is not None:
        initial.update(
            subject=forward_subject(parent.subject), body="\n\n" + forward_text(parent, zone=zone)
        )
    if record is not None:
        initial["to"] = ", ".join(
            record.addresses.current().order_by("added_at").values_list("address", flat=True)
        )
        initial["records"] = [record.pk]
    return initial


def _audience(user: User, form: ComposeForm, parent: Message | None) -> list[str]:
    """Names of the records the message will be linked to: everyone who can see them sees it."""
    typed = form["to"].value() or ""
    texts = [typed, form["cc"].value() or ""]
    addresses = {
        a
        for text in texts
        for item in text.replace(";", ",").split(",")
        if (a := try_normalize_address(item.strip().rpartition("<")[2].rstrip(">")))
    }
    record_ids = set(
        records_for_addresses(organization_id=user.membership.organization_id, addresses=addresses)
    )
    chosen = form["records"].value() or []
    record_ids.update(int(pk) for pk in chosen if str(pk).isdigit())
    if parent is not None:
        record_ids.update(parent.links.values_list("record_id", flat=True))
    return list(
        Record.objects.visible_to(user)
        .filter(pk__in=record_ids)
        .order_by("display_name")
        .values_list("display_name", flat=True)[:10]
    )


@member_required
def compose(request: HttpRequest) -> HttpResponse:
    membership = membership_of(request)
    mailbox = Mailbox.objects.filter(owner=request.user, is_active=True).first()
    mode, parent = _parent(request)
    record = _record_from_query(request) if request.method == "GET" else None
    if request.method == "POST":
        form = ComposeForm(request.POST, request.FILES, user=request.user)
    else:
        form = ComposeForm(initial=_initial(request.user, mode, parent, record), user=request.user)
    if mailbox is None:
        messages.error(request, _("Add a mailbox and make it active before sending mail."))
    if request.method == "POST" and mailbox is not None and form.is_valid():
        response = _send(request, form, mailbox, mode, parent)
        if response is not None:
            return response
    return render(
        request,
        "mailboxes/compose.html",
        {
            "form": form,
            "mode": mode,
            "parent": parent,
            "mailbox": mailbox,
            "organization": membership.organization,
            "audience": _audience(request.user, form, parent),
            "reply_warning": reply_to_warning(parent)
            if parent is not None and mode != "forward"
            else None,
        },
    )


def _send(
    request: HttpRequest, form: ComposeForm, mailbox: Mailbox, mode: str, parent: Message | None
) -> HttpResponse | None:
    data = form.cleaned_data
    files = list(data["attachments"])
    if data.get("draft"):
        # The failed draft is replaced by what the form sends now; its attachments carry over,
        # since a browser cannot keep a file input's files across the failed attempt.
        old = Message.objects.filter(pk=data["draft"], owner=request.user).first()
        if old is not None:
            files = attachments_of(old) + files
        draft_discard(draft_id=data["draft"], user=request.user)
    try:
        message = message_compose(
            sender=request.user,
            mailbox=mailbox,
            to=form.addresses("to"),
            cc=form.addresses("cc"),
            bcc=form.addresses("bcc"),
            subject=data["subject"],
            body_text=data["body"],
            attachments=files,
            in_reply_to=parent if mode in ("reply", "reply_all") else None,
            forward_of=parent if mode == "forward" else None,
            records=list(data["records"]),
            include_quote=False,
        )
    except MessageInvalid as invalid:
        for field, errors in invalid.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
        return None
    except PermissionDenied as denied:
        raise Http404 from denied
    message = message_send(message=message)
    if message.send_state == SendState.SENT:
        messages.success(request, _("Sent."))
        if message.send_error:
            messages.warning(request, message.send_error)
        return redirect("mail:message", pk=message.pk)
    logger.info("compose: message %s not sent (%s)", message.pk, message.send_error)
    form.data = form.data.copy()
    form.data["draft"] = str(message.pk)
    form.add_error(
        None,
        _("Not sent: %(reason)s Your draft is kept; correct it and send again.")
        % {"reason": message.send_error},
    )
    return None
