"""The throwaway database of one benchmark process.

Production runs on PostgreSQL, the embedded default is SQLite: a benchmark measures on
the PostgreSQL server that ``BENCH_DATABASE_URL`` (or ``DATABASE_URL``) names, in a
database of its own created for the run and dropped after it, and otherwise in a fresh
SQLite file. Every benchmark that touches a database gets it from here, so that
``bench.run``'s "Database" line is true of all of them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True)
class ThrowawayDatabase:
    url: str
    kind: str  # "PostgreSQL" or "SQLite", as the figures' "database" column says
    _drop: Callable[[], None]

    def drop(self) -> None:
        """Remove the database (the PostgreSQL database even if clients are still connected)."""
        self._drop()


def configured_server_url() -> str:
    """The PostgreSQL server the benchmarks should use, or ``""`` for SQLite."""
    given = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL") or ""
    return given if given.startswith(("postgres://", "postgresql://")) else ""


def throwaway_database(sqlite_path: Path) -> ThrowawayDatabase:
    """Create the run's database: on the configured PostgreSQL server, else at ``sqlite_path``."""
    server = configured_server_url()
    if not server:

        def remove_file() -> None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                sqlite_path.with_name(sqlite_path.name + suffix).unlink(missing_ok=True)

        return ThrowawayDatabase(f"sqlite:///{sqlite_path}", "SQLite", remove_file)

    import psycopg

    parts = urlsplit(server)
    name = f"collabadmin_bench_{uuid.uuid4().hex[:10]}"
    # CREATE/DROP DATABASE cannot run inside the database itself: go through "postgres".
    maintenance_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop_database() -> None:
        with psycopg.connect(maintenance_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return ThrowawayDatabase(urlunsplit(parts._replace(path=f"/{name}")), "PostgreSQL", drop_database)
