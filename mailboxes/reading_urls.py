"""URLs of the mail reading pages, under ``mail/`` (namespace ``mail``; the mailbox account
pages are ``mailboxes``)."""

from __future__ import annotations

from django.urls import path

from mailboxes import compose_views
from mailboxes import reading_views as views

app_name = "mail"

urlpatterns = [
    path("", views.mail_home, name="home"),
    path("inbox/", views.inbox, name="inbox"),
    path("sent/", views.sent, name="sent"),
    path("shared/", views.shared, name="shared"),
    path("clients/", views.client_folder, name="client_folder"),
    path("search/", views.search, name="search"),
    path("compose/", compose_views.compose, name="compose"),
    path("messages/<int:pk>/", views.message_detail, name="message"),
    path("messages/<int:pk>/body/", views.message_body, name="message_body"),
    path("messages/<int:pk>/original/", views.message_original, name="message_original"),
    path("messages/<int:pk>/delete/", views.message_delete_view, name="message_delete"),
    path("attachments/<int:pk>/", views.attachment_download, name="attachment"),
    path(
        "attachments/<int:pk>/image/<str:token>/",
        views.attachment_inline,
        name="attachment_inline",
    ),
    path(
        "records/<int:pk>/share-emails/",
        views.record_share_emails,
        name="record_share_emails",
    ),
]
