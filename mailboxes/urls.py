from __future__ import annotations

from django.urls import path

from mailboxes import views

app_name = "mailboxes"

urlpatterns = [
    path("accounts/", views.mailbox_list, name="list"),
    path("accounts/new/", views.mailbox_add, name="add"),
    path("accounts/<int:pk>/", views.mailbox_detail, name="detail"),
    path("accounts/<int:pk>/edit/", views.mailbox_edit, name="edit"),
    path(
        "accounts/<int:pk>/incoming-password/",
        views.change_incoming_password,
        name="incoming_password",
    ),
    path(
        "accounts/<int:pk>/outgoing-password/",
        views.change_outgoing_password,
        name="outgoing_password",
    ),
    path("accounts/<int:pk>/activate/", views.mailbox_make_active, name="activate"),
    path("accounts/<int:pk>/delete/", views.mailbox_remove, name="delete"),
    path("accounts/<int:pk>/fetch/", views.mailbox_fetch_now, name="fetch_now"),
    path("accounts/<int:pk>/test/", views.mailbox_test_connection, name="test_connection"),
    path("accounts/<int:pk>/test-smtp/", views.mailbox_test_smtp, name="test_smtp"),
    path("accounts/<int:pk>/progress/", views.mailbox_poll_status, name="poll_status"),
    path(
        "accounts/<int:pk>/quarantine/retry/",
        views.mailbox_quarantine_retry,
        name="quarantine_retry",
    ),
]
