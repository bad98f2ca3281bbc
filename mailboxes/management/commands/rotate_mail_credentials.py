"""manage.py rotate_mail_credentials: re-encrypt every stored mail password under the newest key.

Rotation: put a new key first in FERNET_KEYS (keeping the old ones after it), restart, run this,
then drop the old keys. Idempotent: a password already under the newest key is left as it is,
so a second run (or a run interrupted and started again) changes nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models, transaction

from mailboxes.credentials import CredentialUnreadable, rotate_secret, secret_is_current
from mailboxes.models import Mailbox, SystemSender

# Every column that holds a Fernet token, by model, with the words the report uses for it.
TOKEN_FIELDS: list[tuple[type[models.Model], str, dict[str, str]]] = [
    (
        Mailbox,
        "mailbox",
        {"pop3_password_token": "incoming", "smtp_password_token": "outgoing"},
    ),
    (SystemSender, "system sender", {"smtp_password_token": "outgoing"}),
]


@dataclass
class RotationCounts:
    rotated: int = 0
    current: int = 0
    unreadable: list[str] = field(default_factory=list)


def credentials_rotate_batch(
    *, model: type[models.Model], fields: dict[str, str], label: str, after_pk: int, size: int
) -> tuple[int | None, RotationCounts]:
    """Rotate one batch of rows with a primary key above ``after_pk``, in one transaction.

    Returns the last primary key seen (None when there were no rows left) and the counts. The
    rows are locked while they are rewritten, so a password an owner saves meanwhile is
    neither lost nor overwritten with the old one.
    """
    counts = RotationCounts()
    with transaction.atomic():
        rows = list(
            model._default_manager.select_for_update()
            .filter(pk__gt=after_pk)
            .order_by("pk")
            .only("pk", *fields)[:size]
        )
        if not rows:
            return None, counts
        changed = []
        for row in rows:
            row_changed = False
            for name, words in fields.items():
                token = getattr(row, name)
                if secret_is_current(token):
                    counts.current += bool(token)
                    continue
                try:
                    setattr(row, name, rotate_secret(token))
                except CredentialUnreadable:
                    # The id, never the token: a token is a secret under a key still in use.
                    counts.unreadable.append(f"{label} {row.pk}: {words} password")
                    continue
                counts.rotated += 1
                row_changed = True
            if row_changed:
                changed.append(row)
        if changed:
            model._default_manager.bulk_update(changed, list(fields))
    return rows[-1].pk, counts


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored mail password under the newest key in FERNET_KEYS, in "
        "batches. Passwords no configured key can decrypt are listed and left alone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=500,
            help="Rows rewritten per transaction (default 500).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        size: int = options["batch_size"]
        if size < 1:
            raise CommandError("--batch-size must be at least 1.")
        unreadable: list[str] = []
        for model, label, fields in TOKEN_FIELDS:
            total = RotationCounts()
            after_pk, batches = 0, 0
            while True:
                last_pk, counts = credentials_rotate_batch(
                    model=model, fields=fields, label=label, after_pk=after_pk, size=size
                )
                if last_pk is None:
                    break
                after_pk, batches = last_pk, batches + 1
                total.rotated += counts.rotated
                total.current += counts.current
                total.unreadable += counts.unreadable
                if options["verbosity"] >= 2:
                    self.stdout.write(
                        f"{label} batch {batches} (up to id {last_pk}): {counts.rotated} "
                        f"rotated, {counts.current} already current, "
                        f"{len(counts.unreadable)} unreadable"
                    )
            self.stdout.write(
                f"{label} passwords: {total.rotated} re-encrypted, "
                f"{total.current} already under the newest key, "
                f"{len(total.unreadable)} unreadable"
            )
            unreadable += total.unreadable
        for line in unreadable:
            self.stderr.write(f"cannot decrypt with any key in FERNET_KEYS, left as it is: {line}")
        if unreadable:
            raise CommandError(
                f"{len(unreadable)} stored passwords could not be decrypted; see above. Their "
                "owners must enter them again, or the key that encrypted them must be put back "
                "in FERNET_KEYS."
            )
        self.stdout.write("Every stored mail password is under the newest key.")
