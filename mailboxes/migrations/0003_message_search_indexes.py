"""Indexes for searching mail on PostgreSQL; nothing on SQLite, which searches without them.

pg_trgm trigram GIN indexes on the very expressions Django's ``icontains`` compiles to
(``UPPER(column::text)``), so that a substring, Japanese included, is found through an index;
and a GIN index on the full-text document of ``mailboxes.search.full_text_document()``
(written out here as SQL: a migration must not import app code, and must not change when the
code does). The indexes live outside Django's model state, so ``makemigrations`` stays quiet
on both databases.
"""

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations

# Must match mailboxes.search.FULL_TEXT_BODY_CHARACTERS and FULL_TEXT_CONFIG.
FULL_TEXT_DOCUMENT = (
    "to_tsvector('simple'::regconfig, "
    "COALESCE(subject, '') || ' ' || COALESCE(from_name, '') || ' ' || "
    "COALESCE(from_address, '') || ' ' || COALESCE(LEFT(body_text, 100000), ''))"
)

TRIGRAM = "gin_trgm_ops"
INDEXES = [  # name, table, expression, operator class
    ("message_subject_trgm", "mailboxes_message", "UPPER(subject::text)", TRIGRAM),
    ("message_from_name_trgm", "mailboxes_message", "UPPER(from_name::text)", TRIGRAM),
    ("message_from_address_trgm", "mailboxes_message", "UPPER(from_address::text)", TRIGRAM),
    ("message_body_text_trgm", "mailboxes_message", "UPPER(body_text::text)", TRIGRAM),
    ("message_full_text", "mailboxes_message", FULL_TEXT_DOCUMENT, ""),
    ("messageaddress_address_trgm", "mailboxes_messageaddress", "UPPER(address::text)", TRIGRAM),
    ("messageaddress_name_trgm", "mailboxes_messageaddress", "UPPER(name::text)", TRIGRAM),
    ("attachment_filename_trgm", "mailboxes_attachment", "UPPER(filename::text)", TRIGRAM),
]


class TrigramExtensionOnPostgreSQL(TrigramExtension):
    """Django's CreateExtension skips other databases going forwards, not backwards."""

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


def create_search_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, table, expression, operator_class in INDEXES:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin (({expression}) {operator_class})"
        )


def drop_search_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, *_ in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):

    dependencies = [
        ("mailboxes", "0002_message_send_error_system_sender"),
    ]

    operations = [
        TrigramExtensionOnPostgreSQL(),
        migrations.RunPython(create_search_indexes, drop_search_indexes),
    ]
