from __future__ import annotations

from django.urls import path

from sharing import views

app_name = "sharing"

urlpatterns = [
    path("mail/accounts/<int:pk>/sharing/", views.mailbox_sharing, name="mailbox"),
    path("admin/mail/", views.admin_mail_settings, name="admin"),
    path("admin/mail/<int:pk>/lock/", views.admin_lock, name="lock"),
    path("admin/mail/hand-over/", views.admin_hand_over, name="hand_over"),
    path("admin/mail/audit/", views.audit_trail, name="audit"),
]
