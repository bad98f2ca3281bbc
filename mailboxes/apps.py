from __future__ import annotations

from django.apps import AppConfig


class MailboxesConfig(AppConfig):
    name = "mailboxes"

    def ready(self) -> None:
        from mailboxes import linking  # noqa: F401  (connects the record_addresses_added receiver)
