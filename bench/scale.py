"""Scale-out benchmark: many mailboxes polled by 1, 2 and 4 real Celery workers.

    .venv/bin/python bench/scale.py                    # 200 mailboxes, 1, 2 and 4 workers
    .venv/bin/python bench/scale.py --mailboxes 500 --workers 2,4 --interval 60
    .venv/bin/python bench/scale.py --quick            # a smoke run for CI (well under a minute)

Set-up: a private Dovecot (``tests.peers.dovecot``) with one user per mailbox, each holding a
few messages (``bench.corpus``); a fresh PostgreSQL database (``recruitmail_scalebench``,
dropped and created by the script, dropped again at the end) with one organisation, one
recruiter per mailbox and the organisation's poll interval set short; Redis database 14 as
the broker. Every mailbox's first import is done before the rounds, so each round does the
same work: polls that find mostly nothing new, while new messages keep arriving at random
mailboxes (``--arrivals-per-minute``).

Each round starts W ``celery -A recruitmail worker -Q celery --concurrency=1`` processes
(prefork, as production runs them; the poll queue only), staggers the mailboxes' first due times
evenly over one interval, and runs the real scheduler task ``mailboxes.enqueue_due_polls`` every
``--tick`` seconds (in this process, as beat and production's scheduler-worker, which never
waits behind polls, would run it) for ``--duration`` seconds. It then prints, from the
mailboxes' PollReports:

- polls finished per minute, against the demand (mailboxes x 60 / interval);
- scheduler lag, how late each poll started after its due time (the previous poll's end plus
  the interval): p50 / p95 / max, mailboxes still overdue when the round ended included;
- the mean poll length, from which one worker process's capacity follows.

It exits non-zero if a mailbox was polled by two workers at once (two of its PollReports
overlap), a poll failed, a message was imported twice, or a delivered message was still not
imported after a final catch-up poll. Timings are printed for a person to read, never asserted.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.database import (  # noqa: E402
    drop_database,
    poll_worker_command,
    recreate_database,
    worker_environment,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/recruitmail_scalebench"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/14"
POP3_PASSWORD = "scale-bench-pop3-password"  # noqa: S105 -- a throwaway account on a private server


@dataclass
class Round:
    workers: int
    started: datetime
    ended: datetime
    polls: int = 0
    failed: int = 0
    lags: list[float] = field(default_factory=list)
    overdue_at_end: int = 0
    durations: list[float] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)
    unfinished: int = 0
    arrived: int = 0
    imported: int = 0
    messages_failed: int = 0
    errors: set[str] = field(default_factory=set)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values) or [float("nan")]
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


# --- Setting up -------------------------------------------------------------------------------


def _seed(*, server: Any, mailboxes: int, messages: int, interval: int) -> tuple[list[int], int]:
    """One organisation, one recruiter and one active mailbox per Dovecot user; return the
    mailbox ids and how many messages were delivered."""
    from bench.corpus import address_pool, corpus_messages
    from bench.database import bench_mailbox_create
    from records.models import Organization, Role
    from records.services import member_add, organization_create

    membership = organization_create(
        name="Scale Bench Agency",
        admin_email="admin@agency.example",
        admin_name="Ada Admin",
        admin_password="scale-bench-admin-password",  # noqa: S106
    )
    organization = membership.organization
    Organization.objects.filter(pk=organization.pk).update(poll_interval_seconds=interval)
    corpus = corpus_messages(count=mailboxes * messages, pool=address_pool(), seed=mailboxes)
    ids = []
    for number in range(mailboxes):
        user = f"scale{number:04d}"
        server.add_user(user, POP3_PASSWORD)
        for _ in range(messages):
            server.deliver(user, next(corpus))
        owner = member_add(
            organization=organization,
            email=f"{user}@agency.example",
            full_name=f"Recruiter {number}",
            role=Role.RECRUITER,
        ).user
        mailbox = bench_mailbox_create(
            owner=owner,
            user=user,
            host=server.host,
            port=server.pop3s_port,
            email_address=f"{user}@agency.example",
            password=POP3_PASSWORD,
        )
        ids.append(mailbox.pk)
    return ids, mailboxes * messages


def _analyze_unless_autovacuum() -> None:
    """Fresh planner statistics after the first import, as autovacuum would gather them on a
    running hub (this machine's PostgreSQL has autovacuum off, for test speed)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        if cursor.fetchone()[0] != "on":
            cursor.execute("ANALYZE")


def _poll_all_here(mailbox_ids: list[int]) -> list[str]:
    """Poll every mailbox once in this process (first import, final catch-up); return errors."""
    from mailboxes.importer import mailbox_poll

    errors = []
    for mailbox_id in mailbox_ids:
        report = mailbox_poll(mailbox_id=mailbox_id)
        if report is None or report.outcome not in ("ok", "partial") or report.failed:
            errors.append(f"mailbox {mailbox_id}: {report and report.error_message}")
    return errors


# --- One round ----------------------------------------------------------------------------------


class _Arrivals(threading.Thread):
    """New mail at random mailboxes while a round runs (a Poisson stream)."""

    def __init__(self, server: Any, users: list[str], per_minute: float, seed: int) -> None:
        super().__init__(daemon=True)
        from bench.corpus import address_pool, corpus_messages

        self.server, self.users, self.per_minute = server, users, per_minute
        self.random = random.Random(seed)
        self.corpus = corpus_messages(count=100_000, pool=address_pool(), seed=seed)
        self.stop_event = threading.Event()
        self.delivered = 0

    def run(self) -> None:
        if self.per_minute <= 0:
            return
        while not self.stop_event.wait(self.random.expovariate(self.per_minute / 60)):
            self.server.deliver(self.random.choice(self.users), next(self.corpus))
            self.delivered += 1


def _start_workers(count: int, env: dict[str, str], logs: Path) -> list[subprocess.Popen]:  # type: ignore[type-arg]
    processes = []
    for index in range(count):
        log = (logs / f"worker-{count}-{index}.log").open("w")
        processes.append(
            subprocess.Popen(
                poll_worker_command(name=f"scale{index}", loglevel="INFO"),
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    deadline = time.monotonic() + 60
    paths = [logs / f"worker-{count}-{index}.log" for index in range(count)]
    while not all(" ready." in path.read_text(errors="replace") for path in paths):
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            _stop_workers(processes)
            tails = "\n".join(path.read_text(errors="replace")[-2000:] for path in paths)
            raise SystemExit(f"the workers did not start:\n{tails}")
        time.sleep(0.2)
    return processes


def _stop_workers(processes: list[subprocess.Popen]) -> None:  # type: ignore[type-arg]
    for process in processes:
        process.terminate()  # warm shutdown: a running poll finishes first
    for process in processes:
        process.wait(timeout=60)


def _run_round(
    *,
    workers: int,
    mailbox_ids: list[int],
    args: argparse.Namespace,
    env: dict[str, str],
    server: Any,
    users: list[str],
    logs: Path,
) -> Round:
    import redis
    from django.db import connections
    from django.utils import timezone

    from mailboxes.models import Mailbox, Message, PollReport
    from mailboxes.tasks import enqueue_due_polls

    redis.Redis.from_url(args.broker_url).flushdb()
    PollReport.objects.all().delete()
    imported_before = Message.objects.count()
    processes = _start_workers(workers, env, logs)
    try:
        started = timezone.now()
        # Due times spread evenly over one interval: the steady state of a running hub.
        step = args.interval / len(mailbox_ids)
        due_at = {
            mailbox_id: started + timedelta(seconds=index * step)
            for index, mailbox_id in enumerate(mailbox_ids)
        }
        for mailbox_id, due in due_at.items():
            Mailbox.objects.filter(pk=mailbox_id).update(next_poll_at=due)
        arrivals = _Arrivals(server, users, args.arrivals_per_minute, seed=workers)
        arrivals.start()
        deadline = time.monotonic() + args.duration
        while time.monotonic() < deadline:
            enqueue_due_polls()  # the real scheduler task, as beat would run it
            time.sleep(min(args.tick, max(0.0, deadline - time.monotonic())))
        ended = timezone.now()
        arrivals.stop_event.set()
        arrivals.join()
        # Nothing more is enqueued; let the polls already queued or running end.
        Mailbox.objects.update(next_poll_at=ended + timedelta(days=1))
        drain_deadline = time.monotonic() + 120
        while time.monotonic() < drain_deadline and (
            redis.Redis.from_url(args.broker_url).llen("celery")
            or PollReport.objects.filter(finished_at=None).exists()
        ):
            time.sleep(0.2)
    finally:
        _stop_workers(processes)
        connections.close_all()
    result = Round(workers=workers, started=started, ended=ended, arrived=arrivals.delivered)
    result.imported = Message.objects.count() - imported_before
    _measure(result, due_at, args.interval)
    return result


def _measure(result: Round, due_at: dict[int, datetime], interval: int) -> None:
    """Fill ``result`` from the round's PollReports (every poll of the round has ended)."""
    from mailboxes.models import PollReport

    reports: dict[int, list[dict[str, Any]]] = {}
    for report in PollReport.objects.order_by("started_at").values(
        "mailbox_id", "started_at", "finished_at", "outcome", "failed", "error_message"
    ):
        result.messages_failed += report["failed"]
        if report["error_message"]:
            result.errors.add(report["error_message"][:200])
        reports.setdefault(report["mailbox_id"], []).append(report)
    window_end = result.ended
    for mailbox_id, first_due in due_at.items():
        mine = reports.get(mailbox_id, [])
        result.unfinished += sum(1 for report in mine if report["finished_at"] is None)
        mine = [report for report in mine if report["finished_at"] is not None]
        for previous, report in zip(mine, mine[1:], strict=False):
            if previous["finished_at"] > report["started_at"]:
                result.overlaps.append(
                    f"mailbox {mailbox_id}: a poll {previous['started_at']:%H:%M:%S.%f}"
                    f"-{previous['finished_at']:%H:%M:%S.%f} and another from"
                    f" {report['started_at']:%H:%M:%S.%f}"
                )
        due: datetime | None = first_due
        for report in (r for r in mine if r["started_at"] <= window_end):
            ok = report["outcome"] in ("ok", "partial")
            result.failed += not ok
            if due is not None:
                result.lags.append(max(0.0, (report["started_at"] - due).total_seconds()))
            if report["finished_at"] <= window_end:
                result.polls += 1
                result.durations.append(
                    (report["finished_at"] - report["started_at"]).total_seconds()
                )
            # _finish_ok sets next_poll_at to its finished_at plus the interval, exactly.
            due = report["finished_at"] + timedelta(seconds=interval) if ok else None
        if due is not None and due < window_end:
            # Due inside the round but not started when it ended: at least this late.
            result.overdue_at_end += 1
            result.lags.append((window_end - due).total_seconds())


# --- Printing and checks ------------------------------------------------------------------------


def _print_round(result: Round, args: argparse.Namespace, mailboxes: int) -> None:
    minutes = (result.ended - result.started).total_seconds() / 60
    demand = mailboxes * 60 / args.interval
    mean = sum(result.durations) / len(result.durations) if result.durations else float("nan")
    capacity = 60 / mean if result.durations else float("nan")
    lags = result.lags
    print(
        f"== {result.workers} worker{'s' if result.workers > 1 else ''}:"
        f" {result.polls / minutes:,.0f} mailboxes polled per minute"
        f" (demand {demand:,.0f}/min; {result.polls} polls in {minutes * 60:.0f} s)"
    )
    print(
        f"   scheduler lag: p50 {_percentile(lags, 0.5):.2f} s, p95 {_percentile(lags, 0.95):.2f} s,"
        f" max {max(lags, default=float('nan')):.2f} s"
        f" ({len(lags)} due polls, {result.overdue_at_end} still overdue at the end)"
    )
    print(
        f"   poll length: mean {mean * 1000:.0f} ms, p95 {_percentile(result.durations, 0.95) * 1000:.0f} ms"
        f" (one busy worker process: ~{capacity:,.0f} polls/min);"
        f" new mail: {result.arrived} delivered, {result.imported} imported"
    )
    print(
        f"   overlapping polls of one mailbox: {len(result.overlaps)}; failed polls: {result.failed};"
        f" unfinished: {result.unfinished}"
    )


def _problems(results: list[Round]) -> list[str]:
    problems = []
    for result in results:
        for overlap in result.overlaps[:10]:
            problems.append(f"{result.workers} workers: two polls at once: {overlap}")
        if result.failed:
            problems.append(f"{result.workers} workers: {result.failed} polls failed")
        if result.messages_failed:
            problems.append(
                f"{result.workers} workers: {result.messages_failed} messages failed to import:"
                f" {'; '.join(sorted(result.errors)[:3])}"
            )
        if result.unfinished:
            problems.append(f"{result.workers} workers: {result.unfinished} polls never finished")
    return problems


def _duplicates() -> int:
    from django.db.models import Count

    from mailboxes.models import Message

    return (
        Message.objects.exclude(message_id="")
        .values("mailbox_id", "message_id")
        .annotate(copies=Count("id"))
        .filter(copies__gt=1)
        .count()
    )


# --- Main -----------------------------------------------------------------------------------


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mailboxes", type=int, default=200)
    parser.add_argument("--workers", default="1,2,4", help="worker counts, e.g. 1,2,4")
    parser.add_argument("--messages", type=int, default=3, help="messages per mailbox at start")
    parser.add_argument("--interval", type=int, default=15, help="poll interval, seconds")
    parser.add_argument("--duration", type=float, default=90, help="seconds per round")
    parser.add_argument("--tick", type=float, default=1.0, help="scheduler tick, seconds")
    parser.add_argument("--arrivals-per-minute", type=float, default=120)
    parser.add_argument("--quick", action="store_true", help="16 mailboxes, 1 and 2 workers")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--broker-url", default=DEFAULT_BROKER_URL)
    args = parser.parse_args(argv)
    if args.quick:
        args.mailboxes, args.workers, args.messages = 16, "1,2", 2
        args.interval, args.duration, args.arrivals_per_minute = 5, 8.0, 60
    return args


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    counts = [int(count) for count in args.workers.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="recruitmail-scale-"))
    (workdir / "logs").mkdir()
    from tests.peers.dovecot import DovecotServer

    try:
        with DovecotServer(workdir / "dovecot", cert="valid") as server:
            # The workers log at INFO all the same (celery's --loglevel), to their files.
            env = worker_environment(
                database_url=args.database_url,
                ca_file=server.ca_file,
                workdir=workdir,
                name="scale",
                CELERY_BROKER_URL=args.broker_url,
            )
            os.environ.update(env)
            import django

            django.setup()
            from django.core.management import call_command

            recreate_database(args.database_url)
            try:
                call_command("migrate", verbosity=0, interactive=False)
                mailbox_ids, delivered = _seed(
                    server=server,
                    mailboxes=args.mailboxes,
                    messages=args.messages,
                    interval=args.interval,
                )
                print(
                    f"RecruitMail scale-out benchmark: {os.cpu_count()} cores, load average"
                    f" {os.getloadavg()[0]:.2f}; {args.mailboxes} mailboxes on a loopback Dovecot,"
                    f" poll interval {args.interval} s, scheduler tick {args.tick:g} s,"
                    f" {args.duration:g} s per round, {args.arrivals_per_minute:g} new messages/min"
                )
                errors = _poll_all_here(mailbox_ids)  # every first import, before the rounds
                _analyze_unless_autovacuum()
                if errors:
                    print("FIRST IMPORT FAILED:\n  " + "\n  ".join(errors[:10]))
                    return 1
                users = [f"scale{number:04d}" for number in range(args.mailboxes)]
                results = []
                for count in counts:
                    result = _run_round(
                        workers=count,
                        mailbox_ids=mailbox_ids,
                        args=args,
                        env=env,
                        server=server,
                        users=users,
                        logs=workdir / "logs",
                    )
                    delivered += result.arrived
                    _print_round(result, args, args.mailboxes)
                    results.append(result)
                problems = _problems(results)
                problems += _poll_all_here(mailbox_ids)  # the catch-up: everything delivered
                from mailboxes.models import Message

                stored = Message.objects.count()
                if stored != delivered:
                    problems.append(f"{delivered} messages delivered, {stored} imported")
                duplicates = _duplicates()
                if duplicates:
                    problems.append(f"{duplicates} messages imported more than once")
                print(
                    f"== Checks: {delivered} messages delivered, {stored} imported;"
                    f" two polls of one mailbox at once: {sum(len(r.overlaps) for r in results)};"
                    f" duplicates: {duplicates}"
                )
                if problems:
                    print("PROBLEMS:\n  " + "\n  ".join(problems))
                    return 1
            finally:
                from django.db import connections

                connections.close_all()
                drop_database(args.database_url)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
