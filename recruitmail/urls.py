from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import include, path

from mailboxes import organization_views
from records import member_views
from recruitmail import health, metrics

urlpatterns = [
    path("", member_views.home, name="home"),
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics.metrics, name="metrics"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "accounts/password/",
        auth_views.PasswordChangeView.as_view(success_url="/accounts/profile/"),
        name="password_change",
    ),
    path(
        "accounts/set-password/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(success_url="/accounts/login/"),
        name="password_reset_confirm",
    ),
    path("accounts/profile/", member_views.profile, name="profile"),
    path("members/", member_views.member_list, name="member_list"),
    path("settings/", organization_views.organization_settings, name="organization_settings"),
    path(
        "settings/system-sender/test/",
        organization_views.system_sender_test,
        name="system_sender_test",
    ),
    path("members/new/", member_views.member_create, name="member_create"),
    path("members/<int:pk>/", member_views.member_edit, name="member_edit"),
    path(
        "members/<int:pk>/active/", member_views.member_toggle_active, name="member_toggle_active"
    ),
    path("", include("records.urls")),
    path("mail/", include("mailboxes.urls")),
    path("mail/", include("mailboxes.reading_urls")),
    path("", include("sharing.urls")),
]

handler404 = "recruitmail.errors.not_found"
handler403 = "recruitmail.errors.forbidden"
handler500 = "recruitmail.errors.server_error"
