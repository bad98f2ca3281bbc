"""An index for the folders of one's own mail: Inbox and Sent, newest first.

Inbox is ``owner = me AND direction = 'in' AND mailbox = my active one``, Sent the same with
``'out'`` and ``mailbox = mine OR no mailbox``, both without mail deleted in the hub. Before this
index PostgreSQL answered them from the ``(owner, -sort_at)`` index, but their capped count
("1-25 of 200+", up to 201 rows) took 8-10 ms for a mailbox of 4,000 messages: it ANDed two
bitmaps (the owner's messages, the mailbox's), whose size it guesses as if the two were
unrelated, a hundred times too small, so it read every message of the mailbox and sorted them
instead of stopping at the cap (bench/pages.py). Here the index holds the folder's order and,
as included columns, everything the filters read: a count is an index-only scan that stops at
201 entries (0.5 ms at any mailbox size) and a page is 25 entries. Partial (mail not deleted
in the hub), as the folders are.

Built concurrently on PostgreSQL, so that imports and the web app go on meanwhile (a few
seconds per million messages); elsewhere (SQLite) as usual, without the included columns,
which only PostgreSQL has.
"""

from django.db import migrations, models

INDEX = models.Index(
    fields=["owner", "direction", "-sort_at"],
    include=["mailbox", "organization", "id"],
    condition=models.Q(deleted_at__isnull=True),
    name="message_folder_idx",
)


def _create(apps, schema_editor):
    model = apps.get_model("mailboxes", "Message")
    if schema_editor.connection.vendor == "postgresql":
        # An interrupted concurrent build leaves an invalid index of that name: start again.
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM pg_index JOIN pg_class ON pg_class.oid = pg_index.indexrelid "
                "WHERE pg_class.relname = %s AND NOT pg_index.indisvalid",
                [INDEX.name],
            )
            if cursor.fetchone() is not None:
                schema_editor.execute(f"DROP INDEX CONCURRENTLY {INDEX.name}")
        sql = INDEX.create_sql(model, schema_editor, concurrently=True)
        schema_editor.execute(
            str(sql).replace("CONCURRENTLY", "CONCURRENTLY IF NOT EXISTS", 1)
        )
    else:
        schema_editor.add_index(model, INDEX)


def _drop(apps, schema_editor):
    model = apps.get_model("mailboxes", "Message")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX.name}")
    else:
        schema_editor.remove_index(model, INDEX)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("mailboxes", "0007_message_bodies_lz4"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="message", index=INDEX)],
            database_operations=[migrations.RunPython(_create, _drop)],
        )
    ]
