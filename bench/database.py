"""What the benchmarks share: their own PostgreSQL databases (dropped and created afresh for
each run) and the environment their worker processes run in."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# The benchmarks' mailbox passwords are encrypted with this key (nothing secret is stored).
FERNET_KEY = "Lk0x0s3Qd9gIWQpk3cS0u8Eo7JmK4sm3nQwl8mrhXnY="


def _admin_connection(database_url: str) -> tuple[Any, str]:
    """An autocommit connection to the server's "postgres" database, and the benchmark
    database's name (the URL's path), which must contain "bench"."""
    import environ
    import psycopg2

    config = environ.Env.db_url_config(database_url)
    name = config["NAME"]
    if "bench" not in name:
        raise SystemExit(f"refusing to drop database {name!r}: its name must contain 'bench'")
    admin = psycopg2.connect(
        dbname="postgres",
        user=config.get("USER") or "postgres",
        password=config.get("PASSWORD") or None,
        host=config.get("HOST") or "127.0.0.1",
        port=config.get("PORT") or 5432,
    )
    admin.autocommit = True
    return admin, name


def recreate_database(database_url: str) -> None:
    """Drop and create the benchmark's database (its name is the URL's path)."""
    from psycopg2 import sql

    admin, name = _admin_connection(database_url)
    with admin.cursor() as cursor:
        cursor.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    admin.close()


def drop_database(database_url: str) -> None:
    """Drop the benchmark's database at the end of a run (its name must contain 'bench')."""
    from psycopg2 import sql

    admin, name = _admin_connection(database_url)
    with admin.cursor() as cursor:
        cursor.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
    admin.close()


def worker_environment(
    *, database_url: str, ca_file: Path, workdir: Path, name: str, **extra: str
) -> dict[str, str]:
    """The environment of a benchmark's processes (its own and the workers it starts):
    production settings (DEBUG off) on the benchmark's database, the private Dovecot's CA
    trusted and loopback allowed, the mail store and data under ``workdir``."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "recruitmail.settings",
        "DATABASE_URL": database_url,
        "DEBUG": "false",
        "SECRET_KEY": f"{name}-bench-secret-key-not-for-production",
        "FERNET_KEYS": FERNET_KEY,
        "MAIL_HOSTS_ALLOW_LOOPBACK": "true",
        "MAIL_CA_FILE": str(ca_file),
        "MAIL_STORE_DIR": str(workdir / "mailstore"),
        "RECRUITMAIL_DATA_DIR": str(workdir / "data"),
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        **extra,
    }


def poll_worker_command(*, name: str, loglevel: str = "WARNING") -> list[str]:
    """A benchmark's ``celery worker``: one process (concurrency 1) on the poll queue only.

    The scheduler's task runs in the benchmark's own process (as beat and scheduler-worker
    would run it), so nothing is sent to the scheduler queue.
    """
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "recruitmail",
        "worker",
        "-Q",
        "celery",
        "--pool=prefork",
        "--concurrency=1",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        f"--loglevel={loglevel}",
        "-n",
        f"{name}@%h",
    ]


def bench_mailbox_create(
    *,
    owner: Any,
    user: str,
    host: str,
    port: int,
    email_address: str,
    password: str,
    name: str = "Work",
    **options: Any,
) -> Any:
    """An active mailbox of ``owner`` on a benchmark's private Dovecot (POP3S as ``user``),
    made through the same service as the settings page; ``options`` go to ``mailbox_create``
    (a sharing permission, say)."""
    from mailboxes.services import mailbox_create

    return mailbox_create(
        owner=owner,
        settings_data={
            "name": name,
            "email_address": email_address,
            "pop3_host": host,
            "pop3_port": port,
            "pop3_security": "ssl",
            "pop3_username": user,
            "smtp_host": host,
            "smtp_port": 465,
        },
        pop3_password=password,
        make_active=True,
        **options,
    )
