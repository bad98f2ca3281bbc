"""Partition the search entries by half-year of their ``sort_at`` (``mailboxes.search_partitions``
says why and how). Every entry is kept. Entries without a ``sort_at`` (none are written so,
but the column allowed it) take their message's first: the partition key cannot be empty.
Nothing but the NOT NULL on SQLite.
"""

from django.db import migrations, models


def fill_sort_at(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "UPDATE mailboxes_messagesearch s SET sort_at = m.sort_at FROM mailboxes_message m "
            "WHERE s.message_id = m.id AND s.sort_at IS NULL"
        )


def partition(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        from mailboxes.search_partitions import search_table_partition

        search_table_partition(using=schema_editor.connection.alias)


def unpartition(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        from mailboxes.search_partitions import search_table_unpartition

        search_table_unpartition(using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [
        ("mailboxes", "0005_message_owner_mailbox_statistics"),
    ]

    operations = [
        migrations.RunPython(fill_sort_at, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="messagesearch",
            name="sort_at",
            field=models.DateTimeField(),
        ),
        migrations.RunPython(partition, unpartition),
    ]
