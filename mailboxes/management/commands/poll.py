"""manage.py poll MAILBOX_ID [MAILBOX_ID …] | --all: poll in the foreground and print the report."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailboxes.importer import mailbox_poll
from mailboxes.models import Mailbox, PollReport


class Command(BaseCommand):
    help = "Poll mailboxes now, in the foreground, and print each poll's report."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("mailbox_ids", nargs="*", type=int, metavar="MAILBOX_ID")
        parser.add_argument("--all", action="store_true", help="Poll every active mailbox.")

    def handle(self, *args: Any, **options: Any) -> None:
        ids: list[int] = options["mailbox_ids"]
        if options["all"]:
            ids = list(
                Mailbox.objects.filter(is_active=True).order_by("pk").values_list("pk", flat=True)
            )
        elif not ids:
            raise CommandError("Give one or more mailbox ids, or --all.")
        missing = set(ids) - set(Mailbox.objects.filter(pk__in=ids).values_list("pk", flat=True))
        if missing:
            raise CommandError(f"No mailbox with id {', '.join(map(str, sorted(missing)))}.")
        failed = False
        for mailbox_id in ids:
            report = mailbox_poll(mailbox_id=mailbox_id)
            if report is None:
                self.stdout.write(f"mailbox {mailbox_id}: skipped, another worker is polling it")
                continue
            self.stdout.write(self._describe(mailbox_id, report))
            failed = failed or bool(report.error_code)
        if failed:
            raise CommandError("At least one poll failed; see above.")

    @staticmethod
    def _describe(mailbox_id: int, report: PollReport) -> str:
        line = (
            f"mailbox {mailbox_id}: {report.get_outcome_display()}; on server {report.on_server}, "
            f"new {report.new}, imported {report.imported}, duplicates {report.duplicates}, "
            f"too large {report.too_large}, failed {report.failed}, quarantined {report.quarantined}, "
            f"skipped {report.skipped}, deleted on server {report.deleted_on_server}"
        )
        if report.error_message:
            line += f"\n  {report.error_message}"
        return line
