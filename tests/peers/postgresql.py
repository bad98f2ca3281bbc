"""The local PostgreSQL server as a peer, whatever database the suite itself runs on.

Some tests compare RecruitMail's Python with PostgreSQL's own functions (``to_tsvector``), and
the benchmarks' smoke runs import into PostgreSQL; they need the server in both of
``make test``'s passes, the SQLite one included. ``postgresql_cursor`` connects to it, and a
server that is not there fails those tests (never skips them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import environ
import psycopg2
import pytest


def postgresql_server_url(*, database: str) -> str:
    """The PostgreSQL server the suite runs on, else the local one (CI and developers' machines
    have it on 127.0.0.1), with ``database`` as its database."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        url = "postgres://postgres@127.0.0.1:5432/postgres"
    config = environ.Env.db_url_config(url)
    auth = config.get("USER") or "postgres"
    if config.get("PASSWORD"):
        auth += f":{config['PASSWORD']}"
    host = config.get("HOST") or "127.0.0.1"
    return f"postgres://{auth}@{host}:{config.get('PORT') or 5432}/{database}"


def _server_connection() -> Any:
    """A connection to the server's "postgres" database; raises when the server is not there."""
    config = environ.Env.db_url_config(postgresql_server_url(database="postgres"))
    return psycopg2.connect(
        dbname=config["NAME"],
        user=config.get("USER") or None,
        password=config.get("PASSWORD") or None,
        host=config.get("HOST") or None,
        port=config.get("PORT") or None,
        connect_timeout=10,
    )


@pytest.fixture(autouse=True)
def _postgresql_schema(request: pytest.FixtureRequest) -> None:
    """Tests marked ``postgresql_schema`` check what the migrations build only on PostgreSQL
    (partitions, indexes, statistics, column compression), so the suite's own database must be
    PostgreSQL: anywhere else they fail, never skip. ``make test`` runs them in its PostgreSQL
    pass; its SQLite pass leaves them out by the marker (``-m "not postgresql_schema"``)."""
    if request.node.get_closest_marker("postgresql_schema") is None:
        return
    from django.db import connection as suite_connection

    if suite_connection.vendor != "postgresql":
        pytest.fail(
            "this test checks what the migrations build on PostgreSQL: run the suite with "
            "DATABASE_URL=postgres://... (`make test` does, then leaves it out of its SQLite "
            "pass)",
            pytrace=False,
        )


@pytest.fixture
def postgresql_cursor() -> Iterator[Any]:
    """A cursor on the server's "postgres" database (nothing is written there)."""
    connection = _server_connection()
    try:
        with connection.cursor() as cursor:
            yield cursor
    finally:
        connection.close()
