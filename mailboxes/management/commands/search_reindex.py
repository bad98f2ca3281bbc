"""``manage.py search_reindex``: write the search entries of messages that have none (after an
upgrade), or of every message with ``--all`` (after the tokeniser changed)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from mailboxes.models import Message
from mailboxes.search_index import message_search_index

BATCH = 500


class Command(BaseCommand):
    help = "Write the search index entries of messages that have none (or of all with --all)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--all", action="store_true", help="Rewrite every message's entry.")

    def handle(self, *args: Any, **options: Any) -> None:
        messages = Message.objects.order_by("pk")
        if not options["all"]:
            messages = messages.filter(search_entry__isnull=True)
        done, last = 0, 0
        while True:
            # Keyset paging by pk: each batch is one short transaction, and a message imported
            # meanwhile is indexed by its own import.
            ids = list(messages.filter(pk__gt=last).values_list("pk", flat=True)[:BATCH])
            if not ids:
                break
            done += message_search_index(message_ids=ids)
            last = ids[-1]
        self.stdout.write(f"Indexed {done} messages for search.")
