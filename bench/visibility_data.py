"""The data set of the visibility benchmark (``bench/visibility.py``), loaded with COPY.

One organisation with ``users`` members (one in ten an admin), each with one active mailbox whose
permission is Private, Admin, Public or Custom (30/20/30/20 %); Public mailboxes exclude 0 to 5
correspondent domains. ``records`` records (candidates, contacts, clients; 30 % with "share
emails" ticked), and ``messages`` messages spread unevenly over the mailboxes, newest last, in
threads of one to eight, 12 % sent from the hub, the rest fetched over POP3 (a quarter of them
the owner's own sent mail). About two in three are linked to a record (one in six of those to
two), hub mail nearly always. Each has a From and a To, some a Cc, Bcc or Reply-To, drawn from
a pool of correspondents whose domains (some of them subdomains) are skewed so that the
excluded ones are common.

Landmarks for the measurements: record 1 has exactly ``RECORD_PAGE_MESSAGES`` messages from
many mailboxes, and thread 1 has ``BIG_THREAD_MESSAGES``. About 1 % of bodies mention
``SEARCH_TERM``.

Rows are written with COPY through psycopg2's ``copy_expert``. Columns the loader does not set
get the model field's default, read from the model, so a field added later does not break it
(a new NOT NULL field without a default does, loudly).
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

RECORD_PAGE_MESSAGES = 200
BIG_THREAD_MESSAGES = 40
SEARCH_TERM = "kubernetes"
PERMISSION_CYCLE = [
    "private", "public", "custom", "admin", "public",
    "private", "custom", "public", "private", "admin",
]  # fmt: skip
CHUNK = 50_000
START = datetime(2023, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=3 * 365)
WORDS = (
    "interview offer candidate role salary notice start date contract client shortlist "
    "feedback schedule call tomorrow next week thanks regards resume attached engineer "
    "manager Tokyo Osaka remote hybrid visa relocation reference check second round final "
    "decision budget team lead backend frontend data analyst sales marketing finance"
).split()


@dataclass
class Landmarks:
    """What the measurements look at, chosen by the loader."""

    organization_id: int
    recruiter_id: int  # a recruiter with a Private mailbox: sees mostly others' shared mail
    admin_id: int
    owner_id: int  # the owner of the busiest Public mailbox
    record_id: int
    thread_id: int


def _encode(value: Any) -> str:
    """One value in COPY's text format."""
    if value is None:
        return r"\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | dict):
        value = json.dumps(value)
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
        text = text.replace("\r", "\\r")
    return text


def _default(field: Any) -> Any:
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return datetime.now(UTC)
    return field.get_default()


class Copier:
    """COPY rows of one model: ``attnames`` in the order the rows give them; every other column
    gets its field's default."""

    def __init__(self, cursor: Any, model: Any, attnames: Sequence[str]) -> None:
        fields = {f.attname: f for f in model._meta.local_concrete_fields}
        unknown = set(attnames) - set(fields)
        if unknown:
            raise ValueError(f"{model.__name__} has no column for {sorted(unknown)}")
        # Columns left out get their default; a left-out auto id is filled by the database.
        rest = [
            f
            for name, f in fields.items()
            if name not in attnames
            and not (f.primary_key and f.get_internal_type().endswith("AutoField"))
        ]
        columns = [fields[name].column for name in attnames] + [f.column for f in rest]
        self.cursor = cursor
        quoted = ", ".join(f'"{column}"' for column in columns)
        self.statement = f'COPY "{model._meta.db_table}" ({quoted}) FROM STDIN'  # noqa: S608
        self.suffix = "".join("\t" + _encode(_default(f)) for f in rest) + "\n"
        self.rows = 0

    def copy(self, rows: Iterable[Sequence[Any]]) -> None:
        buffer = io.StringIO()
        suffix = self.suffix
        count = 0
        for row in rows:
            buffer.write("\t".join(map(_encode, row)) + suffix)
            count += 1
        buffer.seek(0)
        self.cursor.copy_expert(self.statement, buffer)
        self.rows += count


def _people(rng: random.Random, users: int) -> tuple[list[str], list[float], list[str]]:
    """Correspondent addresses with skewed weights, and the popular domains (to exclude)."""
    domains = []
    for number in range(max(200, users * 15)):
        domain = f"company{number}.example"
        domains.append(domain)
        if number % 7 == 0:
            domains.append(f"mail.{domain}")  # a subdomain, caught when its parent is excluded
    addresses, weights = [], []
    for rank, domain in enumerate(domains):
        for person in range(1 + 40 // (rank + 1)):
            addresses.append(f"person{person}.{rank}@{domain}")
            weights.append(1.0 / (rank + 1) ** 0.8)
    return addresses, weights, [d for d in domains[:60] if not d.startswith("mail.")]


def load(*, users: int, records: int, messages: int, seed: int = 42) -> Landmarks:
    """Fill the (empty, migrated) database; return what the measurements look at."""
    from django.contrib.auth.hashers import make_password
    from django.db import connection

    from mailboxes.models import (
        Mailbox,
        Message,
        MessageAddress,
        MessageLink,
        MessageSearch,
        Thread,
    )
    from mailboxes.search_index import CONFIG as SEARCH_CONFIG
    from records.models import Membership, Organization, Record, User
    from sharing.models import ExcludedDomain, MailboxSharing

    rng = random.Random(seed)
    organization = Organization.objects.create(name="Bench Agency")
    password = make_password("bench-password")  # hashed once: the users never sign in
    people = User.objects.bulk_create(
        User(email=f"user{u}@agency-bench.example", full_name=f"User {u}", password=password)
        for u in range(users)
    )
    roles = ["admin" if u % 10 == 0 else "recruiter" for u in range(users)]
    Membership.objects.bulk_create(
        Membership(organization=organization, user=user, role=role)
        for user, role in zip(people, roles, strict=True)
    )
    permissions = [PERMISSION_CYCLE[u % len(PERMISSION_CYCLE)] for u in range(users)]
    mailboxes = Mailbox.objects.bulk_create(
        Mailbox(
            organization=organization,
            owner=user,
            name="Work",
            email_address=user.email,
            pop3_host="pop.agency-bench.example",
            pop3_username=user.email,
            smtp_host="smtp.agency-bench.example",
            is_active=True,
        )
        for user in people
    )
    sharings = MailboxSharing.objects.bulk_create(
        MailboxSharing(mailbox=mailbox, permission=permission)
        for mailbox, permission in zip(mailboxes, permissions, strict=True)
    )
    addresses, weights, popular = _people(rng, users)
    ExcludedDomain.objects.bulk_create(
        ExcludedDomain(sharing=sharing, domain=domain)
        for u, sharing in enumerate(sharings)
        if sharing.permission == "public"
        for domain in rng.sample(popular, u % 6)
    )

    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")  # a lost benchmark load is reloaded
        cursor.execute("SET maintenance_work_mem = '256MB'")
        tables = [
            m._meta.db_table
            for m in (Record, Thread, Message, MessageAddress, MessageLink, MessageSearch)
        ]
        # Load first, index afterwards: far faster than updating every index (the search
        # migration's trigram indexes above all) row by row.
        indexes = _secondary_indexes(cursor, tables)
        for name, _definition in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        _load_records(cursor, rng, organization.pk, [u.pk for u in people], records)
        per_mailbox = _load_messages(
            cursor, rng, organization.pk, mailboxes, (addresses, weights), records, messages
        )
        # As mailboxes.search_index writes an entry on PostgreSQL: the vector, not the text.
        cursor.execute(
            f"UPDATE {MessageSearch._meta.db_table} "  # noqa: S608
            f"SET vector = to_tsvector('{SEARCH_CONFIG}', document), document = ''"
        )
        # The UPDATE left every row's first version behind: rewrite the table, so that it is as
        # compact as one the importer filled row by row (a search reads its heap).
        cursor.execute(f"VACUUM FULL {MessageSearch._meta.db_table}")
        for _name, definition in indexes:
            # A partitioned table's index reads "ON ONLY" in pg_indexes, which would create it
            # empty and invalid, without its partitions' parts (the search entries' table is
            # partitioned: mailboxes.search_partitions).
            cursor.execute(definition.replace(" ON ONLY ", " ON ", 1))
        for model in (Record, Thread, Message):  # their ids were given explicitly
            for statement in connection.ops.sequence_reset_sql(_no_style(), [model]):
                cursor.execute(statement)
        cursor.execute("VACUUM ANALYZE")  # fresh statistics and visibility map
    by_user = {
        user.pk: (role, permission)
        for user, role, permission in zip(people, roles, permissions, strict=True)
    }
    public_boxes = [m for m in mailboxes if by_user[m.owner_id][1] == "public"]
    busiest = max(public_boxes, key=lambda m: per_mailbox.get(m.pk, 0))
    return Landmarks(
        organization_id=organization.pk,
        recruiter_id=next(pk for pk, rp in by_user.items() if rp == ("recruiter", "private")),
        admin_id=next(pk for pk, (role, _p) in by_user.items() if role == "admin"),
        owner_id=busiest.owner_id,
        record_id=1,
        thread_id=1,
    )


def _secondary_indexes(cursor: Any, tables: list[str]) -> list[tuple[str, str]]:
    """Name and CREATE statement of each index on ``tables`` that backs no constraint."""
    cursor.execute(
        """
        SELECT i.indexname, i.indexdef FROM pg_indexes i
        WHERE i.schemaname = current_schema() AND i.tablename = ANY(%s)
          AND NOT EXISTS (
            SELECT 1 FROM pg_constraint c WHERE c.conindid = format('%%I', i.indexname)::regclass
          )
        """,
        [tables],
    )
    return list(cursor.fetchall())


def _no_style() -> Any:
    from django.core.management.color import no_style

    return no_style()


def _load_records(
    cursor: Any, rng: random.Random, organization_id: int, user_ids: list[int], count: int
) -> None:
    from records.models import Candidate, Client, Contact, Record

    record = Copier(
        cursor,
        Record,
        ["id", "organization_id", "kind", "display_name", "owner_id", "share_emails"],
    )
    children: dict[str, tuple[Copier, list[tuple[Any, ...]]]] = {
        "candidate": (Copier(cursor, Candidate, ["record_ptr_id", "first_name", "last_name"]), []),
        "contact": (Copier(cursor, Contact, ["record_ptr_id", "first_name", "last_name"]), []),
        "client": (Copier(cursor, Client, ["record_ptr_id", "name"]), []),
    }
    for start in range(1, count + 1, CHUNK):
        rows = []
        for pk in range(start, min(start + CHUNK, count + 1)):
            kind = rng.choices(["candidate", "contact", "client"], [70, 20, 10])[0]
            name = f"{kind.title()} {pk}"
            rows.append((pk, organization_id, kind, name, rng.choice(user_ids), rng.random() < 0.3))
            extra = (name,) if kind == "client" else ("Bench", f"{kind.title()} {pk}")
            children[kind][1].append((pk, *extra))
        record.copy(rows)
        for copier, child_rows in children.values():
            copier.copy(child_rows)
            child_rows.clear()


def _spread(count: int, among: int, offset: int) -> set[int]:
    """``count`` message indexes spread evenly over ``among`` (landmarks from every period)."""
    step = max(1, among // count)
    return {(offset + k * step) % among for k in range(min(count, among))}


def _load_messages(
    cursor: Any,
    rng: random.Random,
    organization_id: int,
    mailboxes: list[Any],
    people: tuple[list[str], list[float]],
    records: int,
    count: int,
) -> dict[int, int]:
    """Threads, messages, their addresses and links; return the number of messages per mailbox."""
    from mailboxes.models import Message, MessageAddress, MessageLink, MessageSearch, Thread
    from mailboxes.search_index import document_of, message_fields

    # Uneven mailboxes: the busiest gets about 13 times the quietest.
    box_weights = [1 / (1 + (i * 7) % 13) for i in range(len(mailboxes))]
    box_of = rng.choices(range(len(mailboxes)), box_weights, k=count)
    big_thread = _spread(BIG_THREAD_MESSAGES, count, offset=7)
    record_page = _spread(RECORD_PAGE_MESSAGES, count, offset=3)
    # Threads of one to eight messages within a mailbox; thread 1 is the long one.
    thread_of: list[int] = []
    current: dict[int, tuple[int, int]] = {}
    next_thread = 2
    for index, box in enumerate(box_of):
        if index in big_thread:
            thread_of.append(1)
            continue
        thread, left = current.get(box, (0, 0))
        if left == 0:
            thread, left = next_thread, rng.choice([1, 1, 2, 2, 3, 4, 6, 8])
            next_thread += 1
        thread_of.append(thread)
        current[box] = (thread, left - 1)
    Copier(cursor, Thread, ["id", "organization_id", "subject", "last_message_at"]).copy(
        (pk, organization_id, f"Thread {pk}", START + SPAN) for pk in range(1, next_thread)
    )
    message = Copier(
        cursor,
        Message,
        [
            "id", "organization_id", "owner_id", "mailbox_id", "origin", "direction", "send_state",
            "thread_id", "message_id", "subject", "from_address", "sent_at", "sort_at",
            "snippet", "body_text", "created_at",
        ],
    )  # fmt: skip
    address = Copier(cursor, MessageAddress, ["message_id", "role", "address", "domain"])
    link = Copier(cursor, MessageLink, ["message_id", "record_id"])
    # The search entries the importer would write, built by the same code (the text here; the
    # vector from it once everything is loaded, see load()).
    search = Copier(cursor, MessageSearch, ["message_id", "document", "sort_at"])
    addresses, weights = people
    per_mailbox: dict[int, int] = {}
    for start in range(0, count, CHUNK):
        indexes = range(start, min(start + CHUNK, count))
        others = rng.choices(addresses, weights, k=2 * len(indexes))
        message_rows: list[tuple[Any, ...]] = []
        address_rows: list[tuple[Any, ...]] = []
        link_rows: list[tuple[int, int]] = []
        search_rows: list[tuple[int, str, datetime]] = []
        for n, index in enumerate(indexes):
            pk, box = index + 1, mailboxes[box_of[index]]
            per_mailbox[box.pk] = per_mailbox.get(box.pk, 0) + 1
            hub = rng.random() < 0.12
            outgoing = hub or rng.random() < 0.25
            other, second = others[2 * n], others[2 * n + 1]
            sender, recipient = (
                (box.email_address, other) if outgoing else (other, box.email_address)
            )
            roles = [("from", sender), ("to", recipient)]
            if rng.random() < 0.2:
                roles.append(("cc", second))
            elif rng.random() < 0.06:
                roles.append(("bcc" if outgoing else "reply_to", second))
            address_rows.extend((pk, role, a, a.rpartition("@")[2]) for role, a in roles)
            words = rng.choices(WORDS, k=rng.randint(40, 90))
            if rng.random() < 0.01:
                words.insert(len(words) // 2, SEARCH_TERM)
            body = " ".join(words)
            at = START + SPAN * (index / count) + timedelta(minutes=rng.randint(0, 600))
            message_rows.append((
                pk, organization_id, box.owner_id, box.pk, "hub" if hub else "pop3",
                "out" if outgoing else "in", "sent" if hub else "", thread_of[index],
                f"<{pk}@bench.example>", f"{' '.join(words[:4]).capitalize()} ({pk})",
                sender, at, at, body[:120], body, at,
            ))  # fmt: skip
            fields = message_fields(
                subject=message_rows[-1][9],
                from_name="",
                from_address=sender,
                correspondents=[("", a) for _role, a in roles],
                attachment_names=[],
                body_text=body,
            )
            search_rows.append((pk, document_of(fields), at))
            if index in record_page:
                link_rows.append((pk, 1))
            elif rng.random() < (0.95 if hub else 0.65):
                first = rng.randint(2, records)
                link_rows.append((pk, first))
                if rng.random() < 0.15:
                    link_rows.append((pk, 2 + (first - 1) % (records - 1)))
        message.copy(message_rows)
        address.copy(address_rows)
        link.copy(link_rows)
        search.copy(search_rows)
    return per_mailbox
