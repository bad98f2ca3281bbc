"""Reading mail: the folders, search, the message page and its frame, downloads, and a record's
"share emails" flag.

Views are glue: rows come from ``mailboxes.selectors`` (which start from the visibility rule,
so a hidden and a missing id are the same 404), responses for stored content from
``mailboxes.downloads`` and ``mailboxes.message_frame``, writes from ``mailboxes.services_mail``
and ``records.services``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages as flash
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_POST

from mailboxes import selectors
from mailboxes.downloads import (
    attachment_response,
    inline_image_reader,
    inline_image_token,
    is_inline_image,
    raw_source_response,
)
from mailboxes.message_frame import IFRAME_SANDBOX, cut_html, frame_document, frame_policy
from mailboxes.models import Direction, Message
from mailboxes.search import MAX_QUERY_LENGTH
from mailboxes.selectors import BODY_DISPLAY_LIMIT, Folder
from mailboxes.services_mail import message_delete, message_mark_read
from records.access import member_required
from records.models import Record, User
from records.services import record_set_share_emails
from sharing.models import Permission
from sharing.selectors import audience_panel

LIST_TEMPLATE = "mailboxes/reading/message_list.html"


# --- Folders and search -------------------------------------------------------------------


@member_required
def mail_home(request: HttpRequest) -> HttpResponse:
    return redirect("mail:inbox")


def _folder_page(request: HttpRequest, folder: str) -> HttpResponse:
    mailnav = selectors.mail_navigation(request.user)  # the header's, and the active mailbox
    mailbox = mailnav.active
    if folder == Folder.CLIENTS and not mailnav.client_folder:
        raise Http404("The client folder is off for the active mailbox.")
    messages = selectors.folder_messages(user=request.user, folder=folder, mailbox=mailbox)
    page = selectors.page_of(messages, user=request.user, number=request.GET.get("page"))
    context = {
        "folder": folder,
        "title": Folder.TITLES[folder],
        "mailbox": mailbox,
        "page": page,
        "mailnav": mailnav,
    }
    return render(request, LIST_TEMPLATE, context)


@member_required
def inbox(request: HttpRequest) -> HttpResponse:
    return _folder_page(request, Folder.INBOX)


@member_required
def sent(request: HttpRequest) -> HttpResponse:
    return _folder_page(request, Folder.SENT)


@member_required
def shared(request: HttpRequest) -> HttpResponse:
    return _folder_page(request, Folder.SHARED)


@member_required
def client_folder(request: HttpRequest) -> HttpResponse:
    return _folder_page(request, Folder.CLIENTS)


@member_required
def search(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:MAX_QUERY_LENGTH]
    found = selectors.search_messages(user=request.user, text=query)
    page = selectors.peek_page_of(found, user=request.user, number=request.GET.get("page"))
    context = {"folder": "search", "title": _("Search"), "query": query, "page": page}
    return render(request, LIST_TEMPLATE, context)


# --- One message --------------------------------------------------------------------------


def _message_url(name: str, pk: int, **params: bool) -> str:
    """The URL of a message view with the given switches (full, images, text) turned on."""
    query = urlencode({key: "1" for key, value in params.items() if value})
    return reverse(name, args=[pk]) + (f"?{query}" if query else "")


def _body_context(request: HttpRequest, message: Any, *, full: bool, as_text: bool) -> dict:
    """How the body shows: the HTML frame, or the text (cut at BODY_DISPLAY_LIMIT unless
    ``full``; the selector already cut it in SQL, one character long, to tell)."""
    has_html = bool(message.html_length)
    show_html = has_html and not as_text
    body_text = message.text_head
    text_cut = len(body_text) > BODY_DISPLAY_LIMIT
    if text_cut and full and not show_html:
        body_text = selectors.message_full_text(user=request.user, pk=message.pk)
    elif text_cut:
        body_text = body_text[:BODY_DISPLAY_LIMIT]
    html_cut = message.html_length > BODY_DISPLAY_LIMIT
    return {
        "body_text": body_text,
        "show_html": show_html,
        "has_html": has_html,
        "has_text": bool(message.text_head.strip()),
        "body_cut": not full and (html_cut if show_html else text_cut),
    }


@member_required
def message_detail(request: HttpRequest, pk: int) -> HttpResponse:
    full = request.GET.get("full") == "1"
    images = request.GET.get("images") == "1"
    as_text = request.GET.get("text") == "1"
    message: Any = get_object_or_404(selectors.readable_messages(request.user), pk=pk)
    is_owner = message.owner_id == request.user.pk
    message_mark_read(message=message, reader=request.user)
    switches = {"full": full, "images": images, "text": as_text}
    folder = "mail:sent" if message.direction == Direction.OUTGOING else "mail:inbox"
    context = {
        "message": message,
        "is_owner": is_owner,
        "date": message.sent_at or message.sort_at,
        "recipients": selectors.message_recipients(
            message=message, include_bcc=is_owner, show_all=full
        ),
        "records": selectors.message_records(user=request.user, message=message),
        "attachments": selectors.message_attachments(message),
        "thread": selectors.thread_messages(user=request.user, message=message),
        **_body_context(request, message, full=full, as_text=as_text),
        "audience": audience_panel(message=message, viewer=request.user),
        "show_images": images,
        "iframe_sandbox": IFRAME_SANDBOX,
        "frame_url": _message_url("mail:message_body", pk, full=full, images=images),
        "urls": {
            "full": _message_url("mail:message", pk, **{**switches, "full": True}),
            "images": _message_url("mail:message", pk, **{**switches, "images": True}),
            "no_images": _message_url("mail:message", pk, **{**switches, "images": False}),
            "text": _message_url("mail:message", pk, **{**switches, "text": True}),
            "html": _message_url("mail:message", pk, **{**switches, "text": False}),
            "after_delete": reverse(folder),
        },
    }
    return render(request, "mailboxes/reading/message_detail.html", context)


def _cid_resolver(request: HttpRequest, message: Message) -> Any:
    """Map a Content-ID to the inline-image URL of the attachment it names (or None)."""
    reader_id = int(request.user.pk)  # type: ignore[arg-type]  # a member is signed in
    by_cid: dict[str, int] = {}
    for attachment in selectors.message_attachments(message).exclude(content_id=""):
        if is_inline_image(attachment):
            by_cid.setdefault(attachment.content_id, attachment.pk)
            by_cid.setdefault(attachment.content_id.lower(), attachment.pk)

    def resolve(content_id: str) -> str | None:
        attachment_id = by_cid.get(content_id) or by_cid.get(content_id.lower())
        if attachment_id is None:
            return None
        token = inline_image_token(attachment_id=attachment_id, user_id=reader_id)
        return reverse("mail:attachment_inline", args=[attachment_id, token])

    return resolve


@member_required
@xframe_options_sameorigin  # the one framable response (module docstring of message_frame)
def message_body(request: HttpRequest, pk: int) -> HttpResponse:
    """The HTML body as the sandboxed iframe's document, under its own strict policy."""
    full = request.GET.get("full") == "1"
    images = request.GET.get("images") == "1"
    message: Any = get_object_or_404(
        selectors.message_html(user=request.user, limit=None if full else BODY_DISPLAY_LIMIT),
        pk=pk,
    )
    if not message.html_head:
        raise Http404("This message has no HTML body.")
    body = message.html_head if full else cut_html(message.html_head, BODY_DISPLAY_LIMIT)[0]
    document = frame_document(
        body, cid_url=_cid_resolver(request, message), show_remote_images=images
    )
    response = HttpResponse(document, content_type="text/html; charset=utf-8")
    hub_origin = f"{request.scheme}://{request.get_host()}"
    response["Content-Security-Policy"] = frame_policy(
        hub_origin=hub_origin, show_remote_images=images
    )
    response["Referrer-Policy"] = "no-referrer"
    response["X-Content-Type-Options"] = "nosniff"
    patch_cache_control(response, private=True, no_store=True)
    return response


@member_required
def message_original(request: HttpRequest, pk: int) -> HttpResponseBase:
    """The raw source as plain text ("view original")."""
    message = get_object_or_404(
        selectors.listable_messages(request.user).only("pk", "raw", "raw_size"), pk=pk
    )
    if not message.raw:
        raise Http404("No original is stored for this message.")
    return raw_source_response(message)


@member_required
@require_POST
def message_delete_view(request: HttpRequest, pk: int) -> HttpResponse:
    """Delete a message in the hub (its owner only; anyone else gets the same 404)."""
    message = get_object_or_404(selectors.own_listable_messages(request.user), pk=pk)
    message_delete(message=message, user=request.user)
    flash.success(request, _("Message deleted."))
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect("mail:inbox")


# --- Attachments --------------------------------------------------------------------------


@member_required
def attachment_download(request: HttpRequest, pk: int) -> HttpResponseBase:
    attachment = get_object_or_404(selectors.readable_attachments(request.user), pk=pk)
    return attachment_response(attachment)


def attachment_inline(request: HttpRequest, pk: int, token: str) -> HttpResponseBase:
    """An image of the frame document. The sandboxed frame may send no session cookie, so
    the signed token names the reader; the visibility rule is applied for that reader."""
    reader_id = inline_image_reader(token=token, attachment_id=pk)
    reader = (
        User.objects.filter(pk=reader_id, is_active=True).select_related("membership").first()
        if reader_id is not None
        else None
    )
    if reader is None:
        raise Http404
    attachment = get_object_or_404(selectors.readable_attachments(reader), pk=pk)
    if not is_inline_image(attachment):
        raise Http404
    return attachment_response(attachment)


# --- Records ------------------------------------------------------------------------------


@member_required
@require_POST
def record_share_emails(request: HttpRequest, pk: int) -> HttpResponse:
    """Tick or untick "share emails" on a record (users of a Custom mailbox only)."""
    record = get_object_or_404(Record.objects.visible_to(request.user), pk=pk)
    mailbox = selectors.active_mailbox(request.user)
    if selectors.sharing_permission(mailbox) != Permission.CUSTOM:
        raise PermissionDenied(_("Your active mailbox does not use the Custom permission."))
    share = request.POST.get("share_emails") == "on"
    record_set_share_emails(record=record, share=share)
    if share:
        flash.success(request, _("Colleagues now see this record's mail from Custom mailboxes."))
    else:
        flash.success(request, _("This record's mail is no longer shared through Custom."))
    return redirect(record.get_absolute_url())
