"""Search through one index entry per message instead of trigram indexes over every column.

``MessageSearch`` holds each message's lexemes (``mailboxes.search_index``); on PostgreSQL one
GIN index over its ``vector`` replaces the trigram and full-text expression indexes of
``0003_message_search_indexes``, which are dropped here. Existing mail gets its entries from
``manage.py search_reindex`` (a migration must not run app code such as the tokeniser); until
then it is not found by search.
"""

import django.contrib.postgres.search
import django.db.models.deletion
from django.db import migrations, models

OLD_INDEXES = [
    "message_subject_trgm",
    "message_from_name_trgm",
    "message_from_address_trgm",
    "message_body_text_trgm",
    "message_full_text",
    "messageaddress_address_trgm",
    "messageaddress_name_trgm",
    "attachment_filename_trgm",
]


def index_search_vectors(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in OLD_INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")
    schema_editor.execute(
        "CREATE INDEX IF NOT EXISTS messagesearch_vector_gin "
        "ON mailboxes_messagesearch USING gin (vector)"
    )
    # A row over 2 KB (the vector of most real mail) is toasted down to 128 bytes, not to the
    # default 2 KB: a search reads the heap rows of its matches for their sort_at, and small
    # rows keep that heap in memory.
    schema_editor.execute("ALTER TABLE mailboxes_messagesearch SET (toast_tuple_target = 128)")


def drop_search_vector_index(apps, schema_editor):
    # Going back: 0003 (reversed next) drops its indexes with IF EXISTS, so nothing to restore.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS messagesearch_vector_gin")


class Migration(migrations.Migration):
    dependencies = [
        ("mailboxes", "0003_message_search_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="MessageSearch",
            fields=[
                (
                    "message",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="search_entry",
                        serialize=False,
                        to="mailboxes.message",
                    ),
                ),
                ("document", models.TextField(blank=True)),
                ("vector", django.contrib.postgres.search.SearchVectorField(null=True)),
                ("sort_at", models.DateTimeField(null=True)),
            ],
        ),
        migrations.RunPython(index_search_vectors, drop_search_vector_index),
    ]
