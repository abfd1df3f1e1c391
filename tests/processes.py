"""Helpers for tests that run real processes of the project (settings, worker, stack)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def project_env(**overrides: str | None) -> dict[str, str]:
    """This test run's environment for a child process; ``None`` removes a variable."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "collabadmin.settings", "PYTHONUNBUFFERED": "1"}
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_python(code: str, *, timeout: float = 60, **env: str | None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter from the project root, with Django set up first."""
    prelude = "import django; django.setup()\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        cwd=ROOT,
        env=project_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def child_database_url() -> str:
    """A DATABASE_URL naming the database this test run uses, for child processes."""
    from django.db import connection

    settings = connection.settings_dict
    if settings["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or ""
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    credentials = f"{user}{password}@" if user else ""
    host, port = settings.get("HOST") or "127.0.0.1", settings.get("PORT") or 5432
    return f"postgres://{credentials}{host}:{port}/{settings['NAME']}"


def redis_env() -> dict[str, str | None]:
    """The Redis this test points the project at, as a child process's variables: a URL, or
    the Sentinel configuration (then without ``REDIS_URL``)."""
    from django.conf import settings

    sentinel = getattr(settings, "REDIS_SENTINEL", None)
    if sentinel is None:
        return {"REDIS_URL": settings.REDIS_URL, "REDIS_SENTINELS": None}
    return {
        "REDIS_URL": None,
        "REDIS_SENTINELS": ",".join(f"{host}:{port}" for host, port in sentinel.sentinels),
        "REDIS_SENTINEL_MASTER": sentinel.master,
        "REDIS_DB": str(sentinel.db),
    }


def start_node(server_name: str, port: int, log_path: Path, **env: str) -> subprocess.Popen[bytes]:
    """A real web node (uvicorn + the project's ASGI app) for ``server_name``, sharing this
    test run's database and Redis; it runs the health monitor like production nodes."""
    child_env = project_env(
        COLLABADMIN_SERVER_NAME=server_name,
        DATABASE_URL=child_database_url(),
        **{**redis_env(), **env},
    )
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "collabadmin.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--lifespan",
                "on",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def run_python_async(code: str, *, timeout: float = 60, **env: str | None) -> tuple[int, str]:
    """``run_python`` for async tests: the event loop keeps running (and receiving) meanwhile."""
    import asyncio

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import django; django.setup()\n" + code,
        cwd=ROOT,
        env=project_env(**env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(timeout):
        output, _ = await process.communicate()
    return process.returncode, output.decode(errors="replace")
