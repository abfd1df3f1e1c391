"""The project's real processes for the issue-7 benchmarks: database, Redis, simulators,
a web node (uvicorn), a Celery worker, and an administrator's ``/ws/status/`` socket.

:func:`django_stack` prepares a throwaway installation for one benchmark process:

* a database of its own: a fresh SQLite file, or, when ``DATABASE_URL`` names a
  PostgreSQL server, a fresh database ``collabadmin_bench_<hex>`` created on that server
  (and dropped afterwards);
* a Redis of its own: a real ``redis-server`` on a Unix socket in the run folder (the
  embedded one of ``collabadmin.embedded_redis``), stopped afterwards;
* Django set up in *this* process on that database (migrated), so the benchmark seeds
  rows and reads the outcome through the ORM, exactly as the node and worker see them.

Children (simulators, node, worker, HAProxy) are started in their own process groups
and stopped, SIGCONT first (a SIGSTOPped child cannot act on SIGTERM), in a ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._common import BENCH_VAR_DIR, REPO_ROOT, BenchError, tail, wait_for_http
from bench._database import ThrowawayDatabase, throwaway_database

PYTHON = sys.executable


def runs_root() -> Path:
    """Where run folders go: ``$COLLABADMIN_VAR_DIR/bench`` if set, else /tmp/bench-var."""
    var = os.environ.get("COLLABADMIN_VAR_DIR")
    return Path(var) / "bench" if var else BENCH_VAR_DIR


# --- processes --------------------------------------------------------------------------------


class Child:
    """One child process in its own process group, with its log file."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], log_path: Path, *, stdout_pipe: bool = False
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.stdout_pipe = stdout_pipe
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if self.stdout_pipe else log,
                stderr=log,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL (a real crash) and reap."""
        if self.alive:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGCONT, SIGTERM to the group, SIGKILL after ``timeout``; reaps."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            for signum in (signal.SIGCONT, signal.SIGTERM):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signum)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def read_line(self, timeout: float) -> str:
        """The next stdout line (``stdout_pipe`` children only); fails with the log."""
        if self.proc is None or self.proc.stdout is None:
            raise BenchError(f"{self.name}: no stdout to read")
        deadline = time.monotonic() + timeout
        buffer = b""
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BenchError(f"{self.name}: no output within {timeout} s\n{tail(self.log_path)}")
                if selector.select(remaining):
                    chunk = os.read(self.proc.stdout.fileno(), 1)
                    if not chunk:
                        raise BenchError(f"{self.name} exited ({self.proc.wait()})\n{tail(self.log_path)}")
                    buffer += chunk
        return buffer.decode().strip()

    def cpu_seconds(self) -> float:
        """User + system CPU time so far of the process and its live children (uvicorn's
        workers, Celery's pool), from /proc."""
        total = 0.0
        for stat_path in Path("/proc").glob("[0-9]*/stat"):
            try:
                stat = stat_path.read_text()
            except OSError:
                continue  # exited meanwhile
            fields = stat[stat.rindex(")") + 2 :].split()
            pid, ppid = int(stat_path.parent.name), int(fields[1])
            if pid == self.pid or ppid == self.pid:
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total


def parse_ports(text: str) -> list[int]:
    """The ``ports=`` of a simulator's ready line: ``A-B`` or ``a,b,c``."""
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(p) for p in text.split(",")]


@dataclass
class Simulator:
    """A real simulator process (``python -m failover.peering``); restartable on its port."""

    stack: BenchStack
    kind: str
    name: str
    port: int = 0
    child: Child | None = None
    extra: list[str] = field(default_factory=list)
    starts: int = 0
    ports: list[int] = field(default_factory=list)

    def start(self) -> Simulator:
        argv = [PYTHON, "-m", "failover.peering", self.kind, "--port", str(self.port), "--name", self.name, *self.extra]
        self.starts += 1
        log = self.stack.run_dir / f"sim-{self.name}.log"
        self.child = self.stack.track(Child(self.name, argv, self.stack.peer_env(), log, stdout_pipe=True).start())
        words = dict(pair.split("=", 1) for pair in self.child.read_line(15).split()[1:])
        self.port = int(words["port"])
        self.ports = parse_ports(words["ports"])
        return self

    def kill(self) -> None:
        self.child.kill()

    def stop_signal(self) -> None:
        self.child.signal(signal.SIGSTOP)

    def cont(self) -> None:
        self.child.signal(signal.SIGCONT)

    def restart(self) -> None:
        """After a kill: a new process on the same port (a peer coming back)."""
        if self.child is not None:
            self.child.stop()
        self.start()


class BenchStack:
    """The installation of one benchmark process: run folder, database, Redis, children."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.run_dir = runs_root() / f"{name}-{uuid.uuid4().hex[:8]}"
        self.children: list[Child] = []
        self.redis_url = ""
        self.database: ThrowawayDatabase | None = None

    @property
    def database_kind(self) -> str:
        """PostgreSQL or SQLite, for the figures' "database" column."""
        return self.database.kind if self.database else ""

    # -- environment ---------------------------------------------------------------------

    def base_env(self) -> dict[str, str]:
        return {
            "DEBUG": "1",
            "DJANGO_SETTINGS_MODULE": "collabadmin.settings",
            "DATABASE_URL": self.database.url if self.database else "",
            "REDIS_URL": self.redis_url,
            "COLLABADMIN_VAR_DIR": str(self.run_dir / "var"),
            "CHANNEL_LAYER_PREFIX": f"bench{self.run_dir.name[-8:]}",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(REPO_ROOT),
        }

    def child_env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **self.base_env(), **extra}

    def peer_env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}

    def track(self, child: Child) -> Child:
        self.children.append(child)
        return child

    # -- set-up and tear-down ------------------------------------------------------------

    def open(self) -> None:
        from collabadmin import embedded_redis

        (self.run_dir / "var").mkdir(parents=True, exist_ok=True)
        self.redis_url = f"unix://{embedded_redis.ensure_running(self.run_dir)}"
        self.database = throwaway_database(self.run_dir / "bench.sqlite3")
        os.environ.update(self.base_env())
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)

    def close(self) -> None:
        for child in reversed(self.children):
            with contextlib.suppress(Exception):
                child.stop()
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        from collabadmin import embedded_redis

        with contextlib.suppress(Exception):
            embedded_redis.stop(self.run_dir)
        # The SQLite file lives in the run folder, kept with it under BENCH_KEEP; a PostgreSQL
        # database would outlive the run, so it is always dropped.
        if self.database is not None and self.database.kind == "PostgreSQL":
            with contextlib.suppress(Exception):
                self.database.drop()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(self.run_dir, ignore_errors=True)

    # -- children ------------------------------------------------------------------------

    def simulator(self, kind: str, name: str, *extra: str) -> Simulator:
        return Simulator(self, kind, name, extra=list(extra)).start()

    def node(
        self,
        server_name: str = "bench-a",
        *,
        monitor: bool = True,
        port: int | None = None,
        workers: int = 1,
        **env_extra: str,
    ) -> Node:
        """A web node; ``workers`` > 1 runs uvicorn's worker processes behind one port."""
        from bench._common import free_port

        port = port or free_port()
        argv = [PYTHON, "-m", "uvicorn", "collabadmin.asgi:application", "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--lifespan", "on", "--no-access-log", "--loop", "uvloop", "--http", "httptools"]
        if workers > 1:
            argv += ["--workers", str(workers)]
        env = self.child_env(
            COLLABADMIN_SERVER_NAME=server_name, COLLABADMIN_RUN_MONITOR="1" if monitor else "0", **env_extra
        )
        log = self.run_dir / f"node-{server_name}.log"
        child = self.track(Child(f"node-{server_name}", argv, env, log).start())
        wait_for_http(child.proc, port, "/healthz", timeout=60, log_path=log)
        return Node(child, port)

    def monitor_process(self) -> Child:
        """``manage.py runmonitor``: the health monitor as a process of its own."""
        argv = [PYTHON, "manage.py", "runmonitor"]
        env = self.child_env(COLLABADMIN_SERVER_NAME="bench-monitor")
        return self.track(Child("monitor", argv, env, self.run_dir / "monitor.log").start())

    def worker(self, concurrency: int = 2) -> Child:
        """A Celery worker as production runs it (prefork); waits until it answers a ping."""
        argv = [PYTHON, "-m", "celery", "-A", "collabadmin", "worker", "--loglevel", "WARNING"]
        argv += ["--concurrency", str(concurrency), "--without-gossip", "--without-mingle"]
        child = self.track(Child("worker", argv, self.child_env(), self.run_dir / "worker.log").start())
        from collabadmin.celery import app

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not child.alive:
                raise BenchError(f"worker exited\n{tail(child.log_path)}")
            with contextlib.suppress(Exception):
                if app.control.ping(timeout=0.5):
                    return child
            time.sleep(0.2)
        raise BenchError(f"worker did not answer within 60 s\n{tail(child.log_path)}")


@dataclass
class Node:
    child: Child
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def django_stack(name: str) -> Iterator[BenchStack]:
    """A :class:`BenchStack` for the ``with`` block; everything is stopped and removed after."""
    from bench._common import install_sigterm_handler

    install_sigterm_handler()
    stack = BenchStack(name)
    try:
        stack.open()
        yield stack
    finally:
        stack.close()


# --- the installation ---------------------------------------------------------------------------


def set_policy(**values: Any) -> None:
    from failover.models import Policy

    policy = Policy.current()
    for key, value in values.items():
        setattr(policy, key, value)
    policy.save()


def media_blender_pair(stack: BenchStack, server_name: str = "bench-a") -> tuple[Any, list[Simulator], list[Any]]:
    """A server with a Media Blender pair of two real simulator processes (primary, secondary).

    The server has no ``base_url`` (its own node is not probed) and is marked up, so the
    director treats it as a healthy routing server. Returns (link, simulators, peers).
    """
    from failover.choices import Health, PeerKind, PeerPriority
    from failover.models import Link, Server
    from failover.services.topology import peer_ensure, server_ensure

    server = server_ensure(name=server_name)
    Server.objects.filter(pk=server.pk).update(health=Health.UP)
    simulators, peers = [], []
    for priority in (PeerPriority.PRIMARY, PeerPriority.SECONDARY):
        name = f"{server_name}-mb-{int(priority)}"
        sim = stack.simulator("media-blender", name)
        simulators.append(sim)
        peers.append(
            peer_ensure(
                server=server,
                kind=PeerKind.MEDIA_BLENDER,
                priority=priority,
                name=name,
                host="127.0.0.1",
                port=sim.port,
            )
        )
    return Link.objects.get(server=server, kind=PeerKind.MEDIA_BLENDER), simulators, peers


def connected_peer_id(link_id: int) -> int | None:
    from failover.choices import PeerConnection
    from failover.models import Link, Peer

    link = Link.objects.only("server_id", "kind").get(pk=link_id)
    return (
        Peer.objects.filter(server_id=link.server_id, kind=link.kind, connection=PeerConnection.CONNECTED)
        .values_list("pk", flat=True)
        .first()
    )


def wait_until(predicate: Callable[[], Any], timeout: float, message: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise BenchError(f"timed out after {timeout} s: {message}")


def staff_cookie(username: str = "bench-admin") -> str:
    """The session cookie of a logged-in administrator (a real session in the database)."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(
        username=username, defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


# --- an administrator's status socket -----------------------------------------------------------


class StatusSocket:
    """A real WebSocket client (``websockets``) on ``/ws/status/``, logged in by cookie, in
    a thread of its own. Every message is kept with its ``time.monotonic()`` of receipt."""

    def __init__(self, port: int, cookie: str) -> None:
        self.url = f"ws://127.0.0.1:{port}/ws/status/"
        self.headers = {"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"}
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.condition = threading.Condition()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="status-socket", daemon=True)

    def __enter__(self) -> StatusSocket:
        self._thread.start()
        if not self.ready.wait(30) or self.error:
            raise BenchError(f"status socket did not open: {self.error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from websockets.asyncio.client import connect

        from bench._live_socket import received_until

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with connect(self.url, additional_headers=self.headers, max_size=None) as ws:
                first = json.loads(await ws.recv())
                if first.get("type") != "snapshot":
                    raise BenchError(f"expected a snapshot, got {first.get('type')}")
                self.ready.set()
                async for raw, at in received_until(ws, self._stop):
                    with self.condition:
                        self.messages.append((at, json.loads(raw)))
                        self.condition.notify_all()
        except BaseException as exc:  # noqa: BLE001 (reported to the waiting thread)
            self.error = exc
            self.ready.set()
            with self.condition:
                self.condition.notify_all()

    def mark(self) -> int:
        with self.condition:
            return len(self.messages)

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], *, start: int, timeout: float) -> float | None:
        """Receipt time of the first message from index ``start`` on that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        index = start
        with self.condition:
            while True:
                while index < len(self.messages):
                    at, message = self.messages[index]
                    index += 1
                    if predicate(message):
                        return at
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.error:
                    return None
                self.condition.wait(remaining)


# --- profiling ------------------------------------------------------------------------------------


def top_frames(raw: Path, limit: int = 25) -> str:
    """py-spy's collapsed stacks -> the functions with the most samples (self and total)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    lines = [f"samples: {samples}", "", "self %  function"]
    lines += [f"{100 * n / samples:6.1f}  {frame}" for frame, n in own.most_common(limit)]
    lines += ["", "total %  function"]
    lines += [f"{100 * n / samples:6.1f}  {frame}" for frame, n in total.most_common(limit)]
    ours = [
        (f, n) for f, n in total.most_common() if any(p in f for p in ("(failover/", "(collabadmin/", "(sessions/"))
    ]
    django = [(f, n) for f, n in total.most_common() if "(django/db/models/query.py" in f or "bulk_update" in f]
    lines += ["", "total %  project function"]
    lines += [f"{100 * n / samples:6.1f}  {frame}" for frame, n in ours[: 2 * limit]]
    lines += ["", "total %  ORM entry points"]
    lines += [f"{100 * n / samples:6.1f}  {frame}" for frame, n in django[:limit]]
    return "\n".join(lines) + "\n"


class PySpy:
    """``py-spy record`` of a process (and its children) for ``seconds``; :meth:`finish`
    writes the hottest functions to ``bench/results/<name>-profile.txt``."""

    def __init__(self, pid: int, seconds: float, name: str, *, subprocesses: bool = False) -> None:
        from bench._common import RESULTS_DIR

        self.binary = Path(sys.executable).with_name("py-spy")
        self.raw = RESULTS_DIR / f"{name}-profile.raw"
        self.out = RESULTS_DIR / f"{name}-profile.txt"
        self.raw.parent.mkdir(parents=True, exist_ok=True)
        argv = [str(self.binary), "record", "--pid", str(pid), "--threads", "--nonblocking"]
        argv += ["--duration", str(max(1, int(seconds))), "--format", "raw", "--output", str(self.raw)]
        if subprocesses:
            argv.append("--subprocesses")
        self.proc = (
            subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self.binary.exists()
            else None
        )
        self.seconds = seconds

    def stop(self) -> str | None:
        """End the recording now (SIGINT: py-spy writes what it has) and summarize it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.finish()

    def finish(self) -> str | None:
        if self.proc is None:
            return None
        try:
            self.proc.wait(timeout=self.seconds + 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if not self.raw.exists():
            return None
        self.out.write_text(top_frames(self.raw))
        self.raw.unlink(missing_ok=True)
        return str(self.out)
