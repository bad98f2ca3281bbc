from __future__ import annotations

from django.apps import AppConfig


class RecruitmailConfig(AppConfig):
    """The project package as an app, for the signal receivers of its web-wide parts."""

    name = "recruitmail"
    verbose_name = "RecruitMail"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from recruitmail.session_idle import session_activity_start

        user_logged_in.connect(session_activity_start, dispatch_uid="recruitmail.session_idle")
