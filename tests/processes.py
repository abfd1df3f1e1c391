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
    # ``env`` may name another database (DATABASE_URL) or Redis than this test run's.
    child_env = project_env(
        **{
            "COLLABADMIN_SERVER_NAME": server_name,
            "DATABASE_URL": child_database_url(),
            **redis_env(),
            **env,
        }
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


def http_status(url: str, *, timeout: float = 2.0) -> int | None:
    """The status a GET of ``url`` answers with, or None when nothing answers in time."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (our own node)
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, TimeoutError):
        return None


def wait_for_node(url: str, process: subprocess.Popen[bytes], log_path: Path, *, timeout: float = 30) -> None:
    """Wait until the node at ``url`` answers ``/healthz``; fail with its log if it exits or never does."""
    import time

    import pytest

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the node exited ({process.returncode}):\n{log_path.read_text(errors='replace')[-3000:]}")
        if http_status(f"{url}/healthz", timeout=1) == 200:
            return
        time.sleep(0.1)
    pytest.fail(f"the node did not answer /healthz within {timeout} s:\n{log_path.read_text(errors='replace')[-3000:]}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGCONT (it may be stopped), SIGTERM, and SIGKILL after 10 s: never leave a child behind."""
    import signal

    if process.poll() is not None:
        return
    process.send_signal(signal.SIGCONT)
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
