"""Crash safety of the import pipeline: kill workers at random moments, then check nothing was lost.

What DESIGN.md ("Importing mail") promises, tested with real processes, a real Dovecot and a
real database: a worker killed at any point loses no message and imports none twice, and no
message leaves the server before it is committed.

1. A private Dovecot gets ``--messages`` generated messages (sizes from 200 bytes to 400 KB,
   some with attachments, some with bare LF line ends).
2. A scratch database (a fresh PostgreSQL database beside ``DATABASE_URL`` when that is set,
   else a SQLite file) is migrated and given an organisation and a mailbox that deletes mail
   from the server after import.
3. Calibration: two polls of a second mailbox measure a worker's boot, a poll with nothing
   new, and the time per message.
4. ``--kills`` times: start ``manage.py poll MAILBOX_ID`` and SIGKILL it at a random moment.
   Most kills wait for the worker to take the lease, then land uniformly over its estimated
   poll (connecting, RETR, batch commits); some wait for its last commit and land among the
   DELEs, the QUIT and the bookkeeping; a few land while it boots. After every kill the
   script checks that each message missing from the server is in the database, byte-exact,
   and that none is there twice. Then new mail arrives (``--arrivals``), so later kills have
   work to interrupt, and the dead worker's lease is marked expired: that step stands in
   for waiting out ``MAIL_POLL_LEASE_SECONDS`` (``--wait-for-lease`` really waits).
5. A last worker polls to completion. Every message ever delivered must be in the database
   exactly once, byte-exact (Dovecot's stored bytes, line ends normalised to CRLF as RETR
   sends them, against ``Message.raw``), and the server must be empty.

Usage::

    .venv/bin/python bench/crash.py                        # 20 kills, 150 messages
    .venv/bin/python bench/crash.py --kills 200 --messages 400 --seed 7
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/recruitmail .venv/bin/python bench/crash.py

Exit status 0 when every check held, 1 otherwise (the failed check is printed).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.mailboxes.mail import make_message  # noqa: E402
from tests.peers.dovecot import DovecotServer  # noqa: E402

LEASE_SECONDS = 3  # the workers' MAIL_POLL_LEASE_SECONDS: a dead worker's lease runs out fast
# Where kills aim: the worker's start-up, somewhere in its poll, or its end (after the last
# commit: DELE, QUIT and bookkeeping, the moments when deletion could outrun a commit).
KILL_AIMS = {"boot": 0.1, "poll": 0.6, "end": 0.3}
WORDS = "candidate interview offer salary client contract start date reference role team".split()


class CheckFailed(Exception):
    """One of the promises did not hold."""


@dataclass
class Kill:
    number: int
    delay: float
    phase: str
    imported: int
    deleted: int
    on_server: int
    in_database: int


@dataclass
class Run:
    """The state shared by the steps: servers, database, what was delivered, what happened."""

    args: argparse.Namespace
    rng: random.Random
    work: Path
    dovecot: DovecotServer
    user: str
    env: dict[str, str]
    mailbox_id: int = 0
    delivered: dict[str, bytes] = field(default_factory=dict)  # digest -> bytes as RETR sends
    kills: list[Kill] = field(default_factory=list)
    serial: int = 0
    boot_seconds: float = 0.5  # process start to lease taken
    connect_seconds: float = 0.05  # lease taken to UIDL diffed: a poll with nothing new
    seconds_per_message: float = 0.005  # RETR, parse, commit, DELE of one message


def as_retrieved(raw: bytes) -> bytes:
    """``raw`` as RETR sends it (Dovecot turns bare LF into CRLF): what Message.raw must hold."""
    raw = re.sub(rb"(?<!\r)\n", b"\r\n", raw)
    return raw if raw.endswith(b"\r\n") else raw + b"\r\n"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def generate(run: Run) -> bytes:
    """One unique message of a random size; a few carry an attachment or bare LF line ends."""
    rng = run.rng
    run.serial += 1
    size = rng.choice(
        [rng.randint(200, 5_000)] * 14
        + [rng.randint(5_000, 60_000)] * 5
        + [rng.randint(100_000, 400_000)]
    )
    lines, length = [], 0
    while length < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14)))
        line = "." + line if rng.random() < 0.05 else line  # dot-stuffing on the wire
        lines.append(line)
        length += len(line) + 1
    attachments = []
    if rng.random() < 0.08:
        payload = rng.randbytes(rng.randint(5_000, 150_000))
        attachments.append((f"cv-{run.serial}.pdf", payload, "application/pdf"))
    raw = make_message(
        subject=f"Crash test message {run.serial}",
        body="\n".join(lines) + "\n",
        message_id=f"<crash-{run.serial}-{secrets.token_hex(4)}@example.jp>",
        attachments=attachments,
    )
    return raw.replace(b"\r\n", b"\n") if rng.random() < 0.05 else raw


def deliver(run: Run, count: int, user: str | None = None) -> None:
    for _ in range(count):
        run.dovecot.deliver(user or run.user, generate(run))
    if user is None:
        # What Dovecot stored (read back from its Maildir), as RETR will hand it over.
        for stored in run.dovecot.messages(run.user):
            run.delivered.setdefault(sha256(as_retrieved(stored)), as_retrieved(stored))


def server_digests(run: Run) -> list[str]:
    return [sha256(as_retrieved(raw)) for raw in run.dovecot.messages(run.user)]


# -- the database ------------------------------------------------------------------------


def scratch_database(work: Path) -> tuple[str, str | None]:
    """(DATABASE_URL for the run, name of a PostgreSQL database to drop at the end or None)."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return f"sqlite:///{work / 'crash.sqlite3'}", None
    import psycopg2

    parts = urlsplit(url)
    name = f"{(parts.path.lstrip('/') or 'recruitmail')}_crash_{secrets.token_hex(4)}"
    admin = psycopg2.connect(parts._replace(path="/postgres").geturl())
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return parts._replace(path=f"/{name}").geturl(), name


def drop_database(name: str) -> None:
    import psycopg2

    parts = urlsplit(os.environ["DATABASE_URL"])
    admin = psycopg2.connect(parts._replace(path="/postgres").geturl())
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def set_up_django(run: Run) -> None:
    os.environ.update(run.env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recruitmail.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def make_mailbox(run: Run, user: str, email: str, password: str) -> int:
    from mailboxes.models import DeletionPolicy
    from mailboxes.services import mailbox_create
    from records.models import Membership, Organization, User

    organization = Organization.objects.get_or_create(name="Crash Test Agency")[0]
    owner = User.objects.create_user(email, password=secrets.token_urlsafe(), full_name=user)
    Membership.objects.create(organization=organization, user=owner)
    data = {
        "name": user,
        "email_address": email,
        "pop3_host": run.dovecot.host,
        "pop3_port": run.dovecot.pop3s_port,
        "pop3_security": "ssl",
        "pop3_username": user,
        "smtp_host": "127.0.0.1",
        "deletion_policy": DeletionPolicy.AFTER_IMPORT,
    }
    mailbox = mailbox_create(
        owner=owner, settings_data=data, pop3_password=password, make_active=True
    )
    return mailbox.pk


# -- workers -------------------------------------------------------------------------------


def start_worker(run: Run, mailbox_id: int) -> subprocess.Popen[bytes]:
    with (run.work / "workers.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "poll", str(mailbox_id)],
            cwd=ROOT,
            env={**os.environ, **run.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def expire_lease(run: Run, mailbox_id: int) -> None:
    """The killed worker's lease must run out before another worker can poll."""
    from django.utils import timezone

    from mailboxes.models import Mailbox

    mailbox = Mailbox.objects.get(pk=mailbox_id)
    if mailbox.lease_expires_at is None or mailbox.lease_expires_at <= timezone.now():
        return
    if run.args.wait_for_lease:
        time.sleep((mailbox.lease_expires_at - timezone.now()).total_seconds() + 0.05)
    else:  # stands in for the wait: what lease_acquire sees is the same
        Mailbox.objects.filter(pk=mailbox_id).update(
            lease_expires_at=timezone.now() - timedelta(seconds=1)
        )


def latest_report_pk(mailbox_id: int) -> int:
    from mailboxes.models import PollReport

    return (
        PollReport.objects.filter(mailbox_id=mailbox_id)
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
        or 0
    )


def calibrate(run: Run) -> None:
    """Time a worker's boot, a poll with nothing new, and a poll of a second mailbox's mail."""
    from mailboxes.models import PollReport

    user, password, count = "calibration", secrets.token_urlsafe(12), min(run.args.messages, 60)
    run.dovecot.add_user(user, password)
    deliver(run, count, user=user)
    mailbox_id = make_mailbox(run, user, "calibration@crash.example", password)
    durations = []
    for _ in range(2):  # the first imports (and deletes) everything, the second finds nothing
        spawned = time.time()
        if start_worker(run, mailbox_id).wait(timeout=120) != 0:
            raise CheckFailed(f"the calibration poll failed; see {run.work / 'workers.log'}")
        report = PollReport.objects.filter(mailbox_id=mailbox_id).order_by("-pk")[0]
        assert report.finished_at is not None
        durations.append((report.finished_at - report.started_at).total_seconds())
    run.boot_seconds = max(report.started_at.timestamp() - spawned, 0.05)
    run.connect_seconds = max(durations[1], 0.005)
    run.seconds_per_message = max((durations[0] - durations[1]) / count, 0.0005)


def kill_one(run: Run, number: int) -> Kill:
    from mailboxes.models import Message, PollReport

    before_db = set(stored_digests(run))
    before_server = server_digests(run)
    new = len(set(before_server) - before_db)
    last_report = latest_report_pk(run.mailbox_id)
    worker = start_worker(run, run.mailbox_id)
    started = time.monotonic()
    aim = run.rng.choices(list(KILL_AIMS), weights=list(KILL_AIMS.values()))[0]
    if aim == "boot":
        time.sleep(run.rng.uniform(0, run.boot_seconds))
    else:
        # Wait until the worker holds the lease (its report exists) …
        while worker.poll() is None and latest_report_pk(run.mailbox_id) == last_report:
            time.sleep(0.001)
    if aim == "poll":
        # … then let it run for a random part of its poll, from the end of connecting on.
        end = run.connect_seconds + run.seconds_per_message * new * 1.1
        time.sleep(run.rng.uniform(0.8 * run.connect_seconds, end))
    elif aim == "end":
        # … or until its last commit, then a moment more: DELE, QUIT, recording the outcome.
        while (
            worker.poll() is None
            and Message.objects.filter(mailbox_id=run.mailbox_id).count() < len(before_db) + new
        ):
            time.sleep(0.001)
        time.sleep(run.rng.uniform(0, 0.005 + 0.0002 * len(before_server)))
    delay = time.monotonic() - started
    finished_first = worker.poll() is not None
    if not finished_first:
        worker.send_signal(signal.SIGKILL)
    worker.wait()
    after_db = stored_digests(run)
    after_server = server_digests(run)
    report = PollReport.objects.filter(mailbox_id=run.mailbox_id, pk__gt=last_report).first()
    imported = len(set(after_db) - before_db)
    if finished_first or (report is not None and report.finished_at is not None):
        phase = "finished"
    elif report is None:
        phase = "booting"
    elif report.on_server == 0 and before_server:
        phase = "connecting"  # leased, but UIDL's answer not yet recorded
    elif imported < report.new:
        phase = "importing"
    elif set(after_server) == set(before_server):
        phase = "deleting"  # every new message committed; DELE sent or not, QUIT not done
    else:
        phase = "quitting"  # QUIT took effect on the server; the outcome not yet recorded
    check_committed_before_deleted(run, after_db, after_server)
    check_byte_exact(run, set(after_db) - before_db)  # committed means committed whole
    if finished_first and report is not None and report.finished_at is not None and report.new:
        # The machine is faster or slower than calibrated: learn from the poll that finished.
        seconds = (report.finished_at - report.started_at).total_seconds() - run.connect_seconds
        run.seconds_per_message = (run.seconds_per_message + max(seconds, 0) / report.new) / 2
    deleted = len(set(before_server) - set(after_server))
    return Kill(number, delay, phase, imported, deleted, len(after_server), len(after_db))


def stored_digests(run: Run) -> list[str]:
    from mailboxes.models import Message

    return list(
        Message.objects.filter(mailbox_id=run.mailbox_id).values_list("raw_sha256", flat=True)
    )


def check_committed_before_deleted(run: Run, in_db: list[str], on_server: list[str]) -> None:
    twice = [digest for digest, count in Counter(in_db).items() if count > 1]
    if twice:
        raise CheckFailed(f"{len(twice)} messages were imported twice, e.g. {twice[0]}")
    left = set(run.delivered) - set(on_server)
    uncommitted = left - set(in_db)
    if uncommitted:
        raise CheckFailed(
            f"{len(uncommitted)} messages left the server before they were "
            f"committed, e.g. {sorted(uncommitted)[0]}"
        )


def final_check(run: Run) -> None:
    from mailboxes.models import Message

    if run.dovecot.messages(run.user):
        raise CheckFailed(f"{len(run.dovecot.messages(run.user))} messages are still on the server")
    rows = list(Message.objects.filter(mailbox_id=run.mailbox_id).values_list("raw_sha256", "raw"))
    counts = Counter(digest for digest, _name in rows)
    check_committed_before_deleted(run, [digest for digest, _name in rows], [])
    missing = set(run.delivered) - set(counts)
    extra = set(counts) - set(run.delivered)
    if missing or extra:
        raise CheckFailed(
            f"{len(missing)} delivered messages are not in the database and "
            f"{len(extra)} stored messages were never delivered"
        )
    check_byte_exact(run, set(counts))


def check_byte_exact(run: Run, digests: set[str]) -> None:
    from mailboxes.mailstore import raw_read
    from mailboxes.models import Message

    rows = Message.objects.filter(mailbox_id=run.mailbox_id, raw_sha256__in=digests)
    for digest, name in rows.values_list("raw_sha256", "raw"):
        kept = raw_read(name)
        if kept != run.delivered[digest]:
            raise CheckFailed(
                f"message {digest} is not byte-exact in the mail store: {name} "
                f"holds {len(kept)} bytes of {len(run.delivered[digest])}"
            )


# -- the run ---------------------------------------------------------------------------------


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--kills", type=int, default=20, help="workers to kill (default 20)")
    add("--messages", type=int, default=150, help="messages at the start (default 150)")
    add("--arrivals", type=int, help="new messages after each kill (default messages/10)")
    add("--seed", type=int, default=random.randrange(1_000_000), help="default: random")
    add("--wait-for-lease", action="store_true", help="let a dead worker's lease run out")
    add("--keep", action="store_true", help="keep the work folder and the database")
    add("--quiet", action="store_true", help="no line per kill")
    args = parser.parse_args(argv)
    if args.arrivals is None:
        args.arrivals = max(1, args.messages // 10)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="rm-crash-"))
    database_url, pg_name = scratch_database(work)
    dovecot = DovecotServer(work / "dovecot")
    user, password = "crash", secrets.token_urlsafe(12)
    env = {
        "DATABASE_URL": database_url,
        "DATABASE_CONN_MAX_AGE": "0",
        "RECRUITMAIL_DATA_DIR": str(work / "data"),
        "MAIL_STORE_DIR": str(work / "mailstore"),
        "MAIL_HOSTS_ALLOW_LOOPBACK": "true",
        "MAIL_CA_FILE": str(dovecot.ca_file),
        "MAIL_POLL_LEASE_SECONDS": str(LEASE_SECONDS),
        "DEBUG": "true",
        "LOG_LEVEL": "WARNING",
    }
    run = Run(args, random.Random(args.seed), work, dovecot, user, env)
    status = 1
    try:
        dovecot.start()
        dovecot.add_user(user, password)
        set_up_django(run)
        calibrate(run)
        run.mailbox_id = make_mailbox(run, user, "crash@crash.example", password)
        deliver(run, args.messages)
        print(
            f"crash test: seed {args.seed}, {args.messages} messages, {args.kills} kills, "
            f"{args.arrivals} arrivals per kill, database {database_url.split(':')[0]}; worker "
            f"boot {run.boot_seconds:.2f} s, connect {run.connect_seconds * 1000:.0f} ms, "
            f"{run.seconds_per_message * 1000:.1f} ms per message"
        )
        for number in range(1, args.kills + 1):
            kill = kill_one(run, number)
            run.kills.append(kill)
            if not args.quiet:
                print(
                    f"  kill {number:3d} after {kill.delay:5.3f} s while {kill.phase:10s} "
                    f"imported {kill.imported:3d}, deleted {kill.deleted:3d}; on server "
                    f"{kill.on_server:3d}, in database {kill.in_database:4d}"
                )
            expire_lease(run, run.mailbox_id)
            deliver(run, args.arrivals)
        if start_worker(run, run.mailbox_id).wait(timeout=300) != 0:
            raise CheckFailed(f"the final poll failed; see {work / 'workers.log'}")
        final_check(run)
        status = 0
    except CheckFailed as failure:
        print(f"FAILED: {failure}")
    finally:
        summarise(run, status, time.monotonic() - began)
        dovecot.close()
        if "django" in sys.modules:
            from django.db import connections

            connections.close_all()
        if pg_name and not args.keep:
            drop_database(pg_name)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return status


def summarise(run: Run, status: int, seconds: float) -> None:
    phases = Counter(kill.phase for kill in run.kills)
    outcome = "OK" if status == 0 else "FAILED"
    print(
        f"crash test {outcome}: {len(run.kills)} kills ({phases['importing']} mid-import, "
        f"{phases['deleting']} after the last commit, {phases['quitting']} after QUIT, "
        f"{phases['connecting']} connecting, {phases['booting']} booting, "
        f"{phases['finished']} after the poll finished); {len(run.delivered)} messages delivered"
        + (", each imported once and byte-exact; server empty" if status == 0 else "")
    )
    kept = "" if run.args.keep else " (removed)"
    print(f"  time {seconds:.1f} s; work folder {run.work}{kept}")


if __name__ == "__main__":
    sys.exit(main())
