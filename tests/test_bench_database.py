"""A benchmark's throwaway database (bench/_database.py) is on the database this run is
configured with, is usable, and is gone after ``drop()``: benchmarks must not leave
databases behind on a production PostgreSQL server, nor files in /tmp.

On the PostgreSQL pass of CI (``DATABASE_URL`` names PostgreSQL) it checks a real
``CREATE DATABASE`` / ``DROP DATABASE``; on the embedded default, the SQLite file."""

from __future__ import annotations

import os
import sqlite3
from urllib.parse import urlsplit

from bench._database import throwaway_database


def _is_postgres(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://"))


def test_a_benchmark_database_is_created_usable_and_dropped(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_DATABASE_URL", raising=False)
    configured = os.environ.get("DATABASE_URL", "")
    sqlite_path = tmp_path / "bench.sqlite3"

    database = throwaway_database(sqlite_path)

    if _is_postgres(configured):
        import psycopg

        assert database.kind == "PostgreSQL"
        name = urlsplit(database.url).path.lstrip("/")
        assert name.startswith("collabadmin_bench_")
        with psycopg.connect(database.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (1)")
        # A client still connected (a node left running) must not keep the database alive.
        lingering = psycopg.connect(database.url)
        try:
            database.drop()
        finally:
            lingering.close()
        # The configured database itself need not exist (pytest-django makes test_<name>).
        with psycopg.connect(urlsplit(configured)._replace(path="/postgres").geturl()) as conn:
            left = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [name]).fetchone()[0]
        assert left == 0
    else:
        assert database.kind == "SQLite"
        assert database.url == f"sqlite:///{sqlite_path}"
        with sqlite3.connect(sqlite_path) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE t (x int)")
        database.drop()
        assert list(tmp_path.iterdir()) == []


def test_bench_database_url_takes_precedence_over_the_sites_own(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("BENCH_DATABASE_URL", "sqlite:///ignored")

    database = throwaway_database(tmp_path / "b.sqlite3")

    # A non-PostgreSQL BENCH_DATABASE_URL means SQLite: the site's DATABASE_URL is not touched.
    assert database.kind == "SQLite"
    database.drop()
