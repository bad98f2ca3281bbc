"""Import benchmark: RecruitMail's POP3 import against a bare poplib loop, on a private Dovecot.

    .venv/bin/python bench/ingest.py                     # N = 10,000
    .venv/bin/python bench/ingest.py --sizes 2000,10000  # two sizes: is memory flat in N?
    .venv/bin/python bench/ingest.py --quick             # 300 messages, a smoke run for CI

For each size N it fills a private Dovecot (``tests.peers.dovecot``) with N generated messages
(``bench.corpus``), creates a fresh PostgreSQL database (dropped and recreated each run) with an
organisation, its owner, a mailbox on that Dovecot and a record for every address of the pool,
then measures over POP3S, each in a fresh worker process:

(a1) a bare ``poplib`` loop that RETRs every message;
(a2) the same loop that also parses each message with the email package
     (``email.message_from_bytes``, the stdlib's default compat32 parser);
(b)  RecruitMail's full import (``mailbox_poll``) into PostgreSQL;
(c)  an incremental poll with nothing new;
(d)  an incremental poll with 10 new messages out of N.

It prints messages per second, the ratio (b)/(a2), the database queries per imported message
(counted with ``connection.execute_wrapper`` in the worker) and the worker's peak memory
(``VmHWM`` of the worker process). Every process verifies TLS against the Dovecot CA. The
workers run as production does: ``DEBUG=false`` (with DEBUG on, Django keeps the text of the
last 9,000 queries, bodies included, which would be measured as the importer's memory).

It exits non-zero when an import does not do what it should (a count is off), never for a
missed performance target: the targets are printed, held or missed, for a person to read.
"""

from __future__ import annotations

import argparse
import json
import os
import poplib
import resource
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.database import recreate_database, worker_environment  # noqa: E402 (after the path is set)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/recruitmail_bench"
QUICK_MESSAGES = 300
NEW_MESSAGES = 10
POP3_PASSWORD = "bench-pop3-password"  # noqa: S105 -- a throwaway account on a private server
# Targets from the issue, at N = 10,000.
TARGET_RATIO = 2.0
TARGET_EMPTY_POLL_SECONDS = 1.0
TARGET_PEAK_MB = 250


# --- Workers: each measurement runs in a fresh process ------------------------------------


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _cpu_seconds() -> float:
    """User plus system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _process_cpu_seconds(pid: int, *, children: bool = False) -> float:
    """CPU time (user + system) of another process, and of its reaped children if asked."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def worker_poplib(spec: dict[str, Any]) -> dict[str, Any]:
    """(a1)/(a2): RETR every message over POP3S with plain poplib, optionally parsing each."""
    import email

    context = ssl.create_default_context(cafile=spec["ca_file"])
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # poplib refuses lines over 2,048 octets; RecruitMail's client allows 1 MB. Same here, so
    # both read the same mail.
    poplib._MAXLINE = 1024 * 1024  # type: ignore[attr-defined]
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    pop = poplib.POP3_SSL(spec["host"], spec["port"], context=context, timeout=30)
    pop.user(spec["user"])
    pop.pass_(spec["password"])
    count, _size = pop.stat()
    octets = 0
    for number in range(1, count + 1):
        _response, lines, _octets = pop.retr(number)
        raw = b"\r\n".join(lines) + b"\r\n"
        octets += len(raw)
        if spec["parse"]:
            email.message_from_bytes(raw)
    pop.quit()
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "cpu_seconds": _cpu_seconds() - cpu_started,
        "messages": count,
        "octets": octets,
        "peak_mb": _peak_rss_mb(),
    }


class _BackendCpu:
    """CPU time of the worker's PostgreSQL backends, the importer's commit thread's included.

    That thread's connection closes when the poll ends, and its backend process exits with
    it, so each backend's time is sampled every 50 ms while it lives."""

    def __init__(self) -> None:
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def add(self, pid: int) -> None:
        self.first[pid] = self.last[pid] = _process_cpu_seconds(pid)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self._read()
        return sum(self.last[pid] - self.first[pid] for pid in self.first)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self._read()

    def _read(self) -> None:
        for pid in list(self.first):
            try:
                self.last[pid] = _process_cpu_seconds(pid)
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue  # the backend has exited


def worker_poll(spec: dict[str, Any]) -> dict[str, Any]:
    """(b)/(c)/(d): one ``mailbox_poll``, its wall time, queries and the peak memory."""
    import django

    django.setup()
    from django.db import connection
    from django.db.backends.signals import connection_created

    from mailboxes.importer import mailbox_poll

    queries = 0
    backends = _BackendCpu()

    def count_query(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    def on_connection(sender, connection, **kwargs):  # type: ignore[no-untyped-def]
        # Every connection the poll opens, on any thread, is counted.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backends.add(cursor.fetchone()[0])
        connection.execute_wrappers.append(count_query)

    if spec.get("commit_on_polling_thread"):
        from mailboxes.committer import BackgroundCommitter

        # No executor: every batch commits on the polling thread, as before BackgroundCommitter.
        BackgroundCommitter.__enter__ = lambda self: self  # type: ignore[method-assign]
    connection_created.connect(on_connection)
    connection.ensure_connection()  # connecting is not the import's work
    before_mb = _current_rss_mb()
    profile_path = spec.get("profile")
    profiler = None
    if profile_path:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    backends.start()
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    children_started = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = mailbox_poll(mailbox_id=spec["mailbox_id"])
    seconds, cpu_seconds = time.perf_counter() - started, _cpu_seconds() - cpu_started
    # The poll's parser process (mailboxes.parser_process), reaped by the poll: its CPU time
    # and its peak memory (ru_maxrss, in KB on Linux, is the largest child's).
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    parser_cpu_seconds = (children.ru_utime + children.ru_stime) - (
        children_started.ru_utime + children_started.ru_stime
    )
    database_cpu_seconds = backends.stop()
    if profiler is not None and profile_path:
        profiler.disable()
        profiler.dump_stats(profile_path)
    assert report is not None, "the mailbox was leased by another worker"
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "database_cpu_seconds": database_cpu_seconds,
        "parser_cpu_seconds": parser_cpu_seconds,
        "parser_peak_mb": children.ru_maxrss / 1024 if parser_cpu_seconds > 0 else 0.0,
        "queries": queries,
        "rss_before_mb": before_mb,
        "peak_mb": _peak_rss_mb(),
        "outcome": report.outcome,
        "error": report.error_message,
        "on_server": report.on_server,
        "new": report.new,
        "imported": report.imported,
        "duplicates": report.duplicates,
        "failed": report.failed,
    }


def _run_worker(kind: str, spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--spec", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    for line in completed.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    sys.stderr.write(completed.stdout + completed.stderr)
    raise SystemExit(f"the {kind} worker failed (exit {completed.returncode})")


# --- Setting up one size ------------------------------------------------------------------


def _seed(*, host: str, port: int, user: str, pool: Any) -> int:
    """Organisation, owner, mailbox and the pool's records; return the mailbox id."""
    from bench.database import bench_mailbox_create
    from records.models import Candidate, Client, Contact
    from records.services import organization_create, record_save

    membership = organization_create(
        name="Bench Agency",
        admin_email="owner@agency.example",
        admin_name="Olivia Owner",
        admin_password="bench-owner-password",  # noqa: S106
    )
    organization, owner = membership.organization, membership.user
    for number, address in enumerate(pool.candidates):
        record_save(
            record=Candidate(first_name="Candidate", last_name=str(number), owner=owner),
            addresses=[address],
            organization=organization,
        )
    for client_name, addresses in pool.contacts.items():
        client = record_save(
            record=Client(name=client_name, owner=owner), addresses=[], organization=organization
        )
        for number, address in enumerate(addresses):
            record_save(
                record=Contact(last_name=f"HR {number}", company=client, owner=owner),
                addresses=[address],
                organization=organization,
            )
    mailbox = bench_mailbox_create(
        owner=owner,
        user=user,
        host=host,
        port=port,
        email_address="owner@agency.example",
        password=POP3_PASSWORD,
        name="Bench",
    )
    return mailbox.pk


def _drop_search_indexes() -> None:
    """Drop the search entries' GIN index (migration 0004), to see what it costs an import (the
    entries are still written)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX IF EXISTS messagesearch_vector_gin")


def _bench_one_size(
    *,
    count: int,
    server: Any,
    env: dict[str, str],
    workdir: Path,
    profile: str | None,
    commit_on_polling_thread: bool,
    without_search_indexes: bool,
) -> dict[str, Any]:
    from django.core.management import call_command
    from django.db import connections

    from bench.corpus import address_pool, corpus_messages
    from mailboxes.models import Message, MessageLink

    connections.close_all()
    recreate_database(env["DATABASE_URL"])
    call_command("migrate", verbosity=0, interactive=False)
    if without_search_indexes:
        _drop_search_indexes()
    pool = address_pool()
    user = f"bench{count}"
    server.add_user(user, POP3_PASSWORD)
    mailbox_id = _seed(host=server.host, port=server.pop3s_port, user=user, pool=pool)
    connections.close_all()

    started = time.perf_counter()
    messages = corpus_messages(count=count + NEW_MESSAGES, pool=pool, seed=count)
    total_octets = 0
    for _ in range(count):
        raw = next(messages)
        total_octets += len(raw)
        server.deliver(user, raw)
    later = list(messages)
    fill_seconds = time.perf_counter() - started

    store = workdir / f"mailstore-{count}"
    worker_env = {**env, "MAIL_STORE_DIR": str(store)}
    login = {
        "host": server.host,
        "port": server.pop3s_port,
        "user": user,
        "password": POP3_PASSWORD,
        "ca_file": str(server.ca_file),
    }
    result: dict[str, Any] = {
        "count": count,
        "octets": total_octets,
        "fill_seconds": fill_seconds,
        # Other work on the machine slows every step; the reader should know.
        "load": os.getloadavg()[0],
        "variants": [
            note
            for flag, note in (
                (
                    commit_on_polling_thread,
                    "commits on the polling thread: --commit-on-polling-thread",
                ),
                (without_search_indexes, "search indexes DROPPED: --without-search-indexes"),
            )
            if flag
        ],
    }

    def measured(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
        # Dovecot's POP3 processes end with their session and are reaped by its master.
        master = server._resources.process.pid
        before = _process_cpu_seconds(master, children=True)
        step = _run_worker(kind, spec, worker_env)
        step["server_cpu_seconds"] = _process_cpu_seconds(master, children=True) - before
        return step

    result["a1"] = measured("poplib", {**login, "parse": False})
    result["a2"] = measured("poplib", {**login, "parse": True})
    result["b"] = measured(
        "poll",
        {
            "mailbox_id": mailbox_id,
            "profile": profile,
            "commit_on_polling_thread": commit_on_polling_thread,
        },
    )
    result["c"] = measured("poll", {"mailbox_id": mailbox_id})
    for raw in later:
        server.deliver(user, raw)
    result["d"] = measured("poll", {"mailbox_id": mailbox_id})
    result["stored_messages"] = Message.objects.filter(mailbox_id=mailbox_id).count()
    result["linked_messages"] = (
        MessageLink.objects.filter(message__mailbox_id=mailbox_id)
        .values("message_id")
        .distinct()
        .count()
    )
    result["store_mb"] = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 1e6
    connections.close_all()
    shutil.rmtree(store, ignore_errors=True)
    return result


# --- Checking and printing ------------------------------------------------------------------


def _problems(result: dict[str, Any]) -> list[str]:
    """What went wrong in the imports themselves (not performance)."""
    count = result["count"]
    expected = {
        "b": {"outcome": "ok", "new": count, "imported": count, "failed": 0},
        "c": {"outcome": "ok", "new": 0, "imported": 0, "failed": 0},
        "d": {"outcome": "ok", "new": NEW_MESSAGES, "imported": NEW_MESSAGES, "failed": 0},
    }
    problems = []
    for step, wanted in expected.items():
        for key, value in wanted.items():
            if result[step][key] != value:
                problems.append(
                    f"({step}) {key} = {result[step][key]!r}, expected {value!r} {result[step]['error']}"
                )
    if result["a1"]["messages"] != count or result["a2"]["messages"] != count:
        problems.append("(a) did not see every message")
    if result["stored_messages"] != count + NEW_MESSAGES:
        problems.append(
            f"{result['stored_messages']} messages stored, expected {count + NEW_MESSAGES}"
        )
    if result["linked_messages"] == 0:
        problems.append("no message was linked to a record")
    return problems


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f} msg/s" if seconds > 0 else "n/a"


def _timing(step: dict[str, Any], count: int, megabytes: float) -> str:
    seconds = step["seconds"]
    return (
        f"{seconds:8.2f} s  {_rate(count, seconds):>12}  {megabytes / seconds:6.1f} MB/s"
        f"  (CPU: worker {step['cpu_seconds']:.1f} s"
        + (
            f", its parser process {step['parser_cpu_seconds']:.1f} s"
            if step.get("parser_cpu_seconds")
            else ""
        )
        + (
            f", its PostgreSQL backends {step['database_cpu_seconds']:.1f} s"
            if "database_cpu_seconds" in step
            else ""
        )
        + f", Dovecot {step['server_cpu_seconds']:.1f} s)"
    )


def _print_size(result: dict[str, Any]) -> None:
    count, megabytes = result["count"], result["octets"] / 1e6
    a1, a2, b, c, d = (result[key] for key in ("a1", "a2", "b", "c", "d"))
    print(
        f"== N = {count:,} messages, {megabytes:,.1f} MB on the server"
        f" (filled in {result['fill_seconds']:.1f} s; load average {result['load']:.2f})"
    )
    print(f"(a1) poplib RETR only:           {_timing(a1, count, megabytes)}")
    print(f"(a2) poplib RETR + email parse:  {_timing(a2, count, megabytes)}")
    print(f"(b)  RecruitMail full import:    {_timing(b, b['imported'], megabytes)}")
    for note in result["variants"]:
        print(f"     ({note})")
    print(f"(b)/(a2) ratio: {b['seconds'] / a2['seconds']:.2f}")
    print(
        f"(b)  queries: {b['queries']:,} = {b['queries'] / max(b['imported'], 1):.3f} per imported message"
        f" ({b['imported']:,} imported, {result['linked_messages']:,} linked to records,"
        f" mail store {result['store_mb']:,.0f} MB)"
    )
    print(
        f"(b)  peak worker memory: {b['peak_mb']:.0f} MB"
        f" (VmHWM; {b['rss_before_mb']:.0f} MB before the poll)"
        + (
            f"; its parser process {b['parser_peak_mb']:.0f} MB more"
            if b.get("parser_peak_mb")
            else ""
        )
    )
    print(
        f"(c)  incremental poll, nothing new: {c['seconds']:.3f} s, {c['queries']} queries,"
        f" peak {c['peak_mb']:.0f} MB"
    )
    print(
        f"(d)  incremental poll, {NEW_MESSAGES} new: {d['seconds']:.3f} s, {d['queries']} queries"
        f" ({d['imported']} imported), peak {d['peak_mb']:.0f} MB"
    )


def _print_targets(results: list[dict[str, Any]]) -> None:
    largest = results[-1]
    ratio = largest["b"]["seconds"] / largest["a2"]["seconds"]
    empty_queries = {r["count"]: r["c"]["queries"] for r in results}
    # The parser process's peak counts too: the poll needs both processes at once.
    peaks = {r["count"]: r["b"]["peak_mb"] + r["b"].get("parser_peak_mb", 0.0) for r in results}
    at = f"at N = {largest['count']:,}"

    def verdict(ok: bool) -> str:
        return "holds" if ok else "MISSED"

    print(f"== Targets ({at}; the issue sets them for N = 10,000)")
    print(f"(b)/(a2) <= {TARGET_RATIO:g}: {ratio:.2f} -> {verdict(ratio <= TARGET_RATIO)}")
    constant = len(set(empty_queries.values())) == 1
    queries_text = ", ".join(f"{q} at N = {n:,}" for n, q in empty_queries.items())
    print(
        f"(c) constant queries: {queries_text}"
        + (f" -> {verdict(constant)}" if len(results) > 1 else " (run two sizes to compare)")
    )
    print(
        f"(c) under {TARGET_EMPTY_POLL_SECONDS:g} s: {largest['c']['seconds']:.3f} s"
        f" -> {verdict(largest['c']['seconds'] < TARGET_EMPTY_POLL_SECONDS)}"
    )
    peaks_text = ", ".join(f"{p:.0f} MB at N = {n:,}" for n, p in peaks.items())
    flat = max(peaks.values()) <= min(peaks.values()) * 1.15 + 10
    print(
        f"peak worker memory (with its parser process) < {TARGET_PEAK_MB} MB and flat in N:"
        f" {peaks_text}"
        f" -> {verdict(max(peaks.values()) < TARGET_PEAK_MB and (flat or len(results) == 1))}"
    )


# --- Main -----------------------------------------------------------------------------------


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000, help="N (default 10,000)")
    parser.add_argument("--sizes", help="several N, comma-separated, e.g. 2000,10000")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: N = {QUICK_MESSAGES}")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--profile", help="write a cProfile of the largest (b) here")
    parser.add_argument(
        "--commit-on-polling-thread",
        action="store_true",
        help="(b) without the background commit thread, for comparison",
    )
    parser.add_argument(
        "--without-search-indexes",
        action="store_true",
        help="drop the search entries' GIN index (migration 0004) first, to see what it costs",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if args.worker:
        spec = json.loads(args.spec)
        result = (worker_poplib if args.worker == "poplib" else worker_poll)(spec)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    if args.quick:
        sizes = [QUICK_MESSAGES]
    elif args.sizes:
        sizes = sorted(int(size) for size in args.sizes.split(","))
    else:
        sizes = [args.messages]

    from tests.peers.dovecot import DovecotServer

    workdir = Path(tempfile.mkdtemp(prefix="recruitmail-bench-"))
    try:
        with DovecotServer(workdir / "dovecot", cert="valid") as server:
            env = worker_environment(
                database_url=args.database_url,
                ca_file=server.ca_file,
                workdir=workdir,
                name="ingest",
            )
            os.environ.update(env)
            import django

            django.setup()
            print(
                f"RecruitMail import benchmark: {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
                f"PostgreSQL at {args.database_url.rsplit('@', 1)[-1]}, Dovecot POP3S on loopback"
            )
            results = []
            for count in sizes:
                result = _bench_one_size(
                    count=count,
                    server=server,
                    env=env,
                    workdir=workdir,
                    profile=args.profile if count == sizes[-1] else None,
                    commit_on_polling_thread=args.commit_on_polling_thread,
                    without_search_indexes=args.without_search_indexes,
                )
                _print_size(result)
                problems = _problems(result)
                if problems:
                    print("IMPORT PROBLEMS:\n  " + "\n  ".join(problems))
                    return 1
                results.append(result)
            _print_targets(results)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
