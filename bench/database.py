"""The benchmarks' own PostgreSQL databases: dropped and created afresh for each run."""

from __future__ import annotations


def recreate_database(database_url: str) -> None:
    """Drop and create the benchmark's database (its name is the URL's path)."""
    import environ
    import psycopg2
    from psycopg2 import sql

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
    with admin.cursor() as cursor:
        cursor.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    admin.close()


def drop_database(database_url: str) -> None:
    """Drop the benchmark's database at the end of a run (its name must contain 'bench')."""
    import environ
    import psycopg2
    from psycopg2 import sql

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
    with admin.cursor() as cursor:
        cursor.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
    admin.close()
