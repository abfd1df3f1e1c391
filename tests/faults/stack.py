"""The whole stack as real processes for the fault-injection suite, each one killable,
stoppable and restartable: two Media Blender simulators, a web node, the health monitor,
a Celery worker, Celery beat, a Redis server of the suite's own, and, on demand, floods
of requests that saturate the web node. When the suite runs on a PostgreSQL cluster of
its own (tests/faults/own_postgres.py), that database server too.

Nothing here fakes a failure: a crash is SIGKILL, a stall is SIGSTOP, a Redis restart is
the server process stopping and starting again on the same socket (or, under Sentinel, the
master's process stopping or being killed while a replica waits to be promoted), a stuck
worker is a real worker told to stop consuming, a database restart is ``pg_ctl stop`` (fast,
or immediate: a crash) and, when the fault heals, ``pg_ctl start``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from celery import Celery
from celery.app.control import Control

from collabadmin import embedded_redis
from tests.peering.conftest import PeerProcess
from tests.postgres_cluster import Cluster
from tests.processes import ROOT, child_database_url, project_env, redis_env, start_node
from tests.redis_sentinel import SentinelCluster, Server


@dataclass
class Managed:
    """One process of the stack: ``start`` makes a new one (same ports, same files)."""

    name: str
    start: Callable[[], subprocess.Popen[bytes] | PeerProcess]
    handle: subprocess.Popen[bytes] | PeerProcess | None = None
    stopped: bool = False
    starts: int = 0
    # Restarted when it exits by itself, as production's process supervisor does (systemd
    # Restart=always, a container's restart policy); a process killed by a fault stays
    # down until the fault heals.
    supervised: bool = False
    # Started by a fault and stopped when it heals (a flood of requests), not part of the
    # stack's steady state.
    on_demand: bool = False
    killed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def popen(self) -> subprocess.Popen[bytes] | None:
        if self.handle is None:
            return None
        return self.handle.process if isinstance(self.handle, PeerProcess) else self.handle

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def launch(self) -> None:
        with self.lock:
            if self.alive:
                return
            self.handle = self.start()
            self.stopped = False
            self.killed = False
            self.starts += 1

    def kill(self) -> None:
        self.killed = True
        if self.alive:
            self.popen.kill()
            self.popen.wait(timeout=10)

    def pause(self) -> None:
        if self.alive and not self.stopped:
            self.popen.send_signal(signal.SIGSTOP)
            self.stopped = True

    def resume(self) -> None:
        if self.alive and self.stopped:
            self.popen.send_signal(signal.SIGCONT)
        self.stopped = False

    def heal(self) -> None:
        """Running and not stopped, whatever happened to it (stopped, for an on-demand one)."""
        if self.on_demand:
            self.terminate()
            return
        self.resume()
        if not self.alive:
            self.launch()

    def terminate(self) -> None:
        self.resume()
        if self.alive:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


class EmbeddedRedis:
    """One Redis server on a Unix socket of the suite's own (collabadmin/embedded_redis.py)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def stop(self) -> None:
        embedded_redis.stop(self.folder)

    def start(self) -> None:
        embedded_redis.ensure_running(self.folder)

    def kill_master(self) -> None:
        raise NotImplementedError("one Redis server has no replica to promote: a Sentinel fault")

    def broker(self) -> dict[str, object]:
        return {"hostname": f"redis+socket://{embedded_redis.socket_path(self.folder)}"}


class SentinelRedis:
    """A master, a replica and three sentinels (tests/redis_sentinel.py). A stop or a kill
    hits whichever server is the master now; healing starts every server that is down
    again, as a replica of the master the sentinels name then."""

    def __init__(self, cluster: SentinelCluster) -> None:
        self.cluster = cluster
        self.down: list[Server] = []
        # Faults that found no master to hit: the sentinels named none (a failover under
        # way, from the fault before) or none answered in time.
        self.missed = 0

    def master(self) -> Server | None:
        address = self.cluster.master_address()
        master = next((s for s in self.cluster.servers.values() if s.address == address and s.alive), None)
        self.missed += master is None
        return master

    def stop(self) -> None:
        if master := self.master():
            master.process.terminate()
            master.process.wait(timeout=10)
            self.down.append(master)

    def kill_master(self) -> None:
        if master := self.master():
            master.process.kill()
            master.process.wait(timeout=10)
            self.down.append(master)

    def start(self) -> None:
        while self.down:
            self.cluster.restart(self.down.pop())

    def broker(self) -> dict[str, object]:
        config = self.cluster.config
        return {"hostname": config.kombu_url(), "transport_options": config.kombu_transport_options()}


class OwnPostgres:
    """The PostgreSQL cluster of the suite's own (never the machine's, which is shared):
    stopped by the fault, started again when it heals. The test process's own connection
    dies with it too: the suite closes it and reads again (Driver, and after the heal)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.down = False

    def stop(self, mode: str) -> None:
        if not self.down:
            self.cluster.stop(mode)
            self.down = True

    def start(self) -> None:
        if self.down:
            self.cluster.start()
            self.down = False


@dataclass
class Stack:
    redis: EmbeddedRedis | SentinelRedis
    database: OwnPostgres | None = None
    processes: dict[str, Managed] = field(default_factory=dict)
    restarts: list[str] = field(default_factory=list)
    # stuck_worker faults the worker acknowledged (it stopped consuming; a reconnection to
    # Redis may start it consuming again before its watchdog replaces it), and missed ones.
    stuck_workers: int = 0
    stuck_workers_missed: int = 0
    last_stuck_at: float | None = None  # time.monotonic() of the last one sent
    _control: Control | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def add(
        self,
        name: str,
        start: Callable[[], subprocess.Popen[bytes] | PeerProcess],
        *,
        supervised: bool = False,
        on_demand: bool = False,
    ) -> Managed:
        managed = Managed(name, start, supervised=supervised, on_demand=on_demand)
        if not on_demand:
            managed.launch()
        self.processes[name] = managed
        return managed

    def supervise(self) -> None:
        """Start the supervisor: every half second, launch again a supervised process that
        exited without a fault killing it."""

        def watch() -> None:
            while not self._stop.wait(0.5):
                for managed in list(self.processes.values()):
                    if managed.supervised and not managed.killed and not managed.alive:
                        self.restarts.append(managed.name)
                        managed.launch()

        threading.Thread(target=watch, name="faults-supervisor", daemon=True).start()

    def __getitem__(self, name: str) -> Managed:
        return self.processes[name]

    def redis_stop(self) -> None:
        self.redis.stop()

    def redis_start(self) -> None:
        self.redis.start()

    def stop_worker_consuming(self) -> None:
        """Celery's remote control tells the worker to stop consuming its queue: it stays
        alive and connected, taking nothing, until its own watchdog finds it stuck and it
        leaves (collabadmin/worker_watchdog.py); the supervisor then starts a fresh one.
        Sent from a thread, again for a few seconds until the worker answers: a worker that
        is starting or reconnecting to Redis hears no control message (then the fault is
        missed, and counted so)."""
        threading.Thread(target=self._cancel_consumer, name="faults-stuck-worker", daemon=True).start()

    def _cancel_consumer(self, *, attempts: int = 5) -> None:
        from django.conf import settings

        for _ in range(attempts):
            # Sent is enough for the worker to stop consuming, answered or not.
            self.last_stuck_at = time.monotonic()
            try:
                replies = self.control().cancel_consumer(settings.CELERY_TASK_DEFAULT_QUEUE, reply=True, timeout=2)
            except Exception:  # noqa: BLE001 (Redis restarting or failing over: try again)
                replies = []
                time.sleep(1)
            if any("no longer consuming" in str(reply) for reply in replies):
                self.stuck_workers += 1
                return
        self.stuck_workers_missed += 1

    def control(self) -> Control:
        """Celery's remote control through the stack's Redis. An app of its own: the test
        process's app publishes control messages through its own broker whatever
        connection it is given."""
        if self._control is None:
            broker = self.redis.broker()
            app = Celery("faults-control", broker=broker["hostname"], set_as_current=False)
            app.conf.broker_transport_options = broker.get("transport_options", {})
            app.conf.accept_content = ["json"]
            self._control = app.control
        return self._control

    def heal(self) -> None:
        self.redis_start()
        if self.database is not None:
            self.database.start()
        for managed in self.processes.values():
            managed.heal()

    def shutdown(self) -> None:
        self._stop.set()
        if self.database is not None:
            self.database.start()  # the test database is flushed afterwards, even after a failure
        for managed in self.processes.values():
            managed.terminate()


def child_env(server_name: str) -> dict[str, str]:
    return project_env(COLLABADMIN_SERVER_NAME=server_name, DATABASE_URL=child_database_url(), **redis_env())


def python_process(argv: list[str], log: Path, server_name: str, **env: str) -> Callable[[], subprocess.Popen[bytes]]:
    def start() -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen(
                [sys.executable, *argv],
                cwd=ROOT,
                env={**child_env(server_name), **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    return start


def worker(log: Path) -> Callable[[], subprocess.Popen[bytes]]:
    # One process with a thread pool: SIGKILL of it is the death of every task it runs.
    argv = ["-m", "celery", "-A", "collabadmin", "worker", "--pool", "threads", "--concurrency", "4"]
    argv += ["--loglevel", "WARNING", "--without-heartbeat", "--without-mingle", "--without-gossip"]
    status_file = worker_status_file(log)
    return python_process(argv, log, "faults-worker", COLLABADMIN_WORKER_STATUS_FILE=str(status_file))


def worker_status_file(log: Path) -> Path:
    """The status file the worker rewrites every second (collabadmin/worker_watchdog.py)."""
    return log.with_name("worker.json")


def beat(log: Path, schedule: Path) -> Callable[[], subprocess.Popen[bytes]]:
    argv = ["-m", "celery", "-A", "collabadmin", "beat", "--loglevel", "WARNING", "-s", str(schedule)]
    return python_process(argv, log, "faults-beat")


def monitor(log: Path) -> Callable[[], subprocess.Popen[bytes]]:
    return python_process(["manage.py", "runmonitor"], log, "faults-monitor")


def node(server_name: str, port: int, log: Path) -> Callable[[], subprocess.Popen[bytes]]:
    # The web node serves the API only; the monitor is a process of its own, to be paused.
    return lambda: start_node(server_name, port, log, COLLABADMIN_RUN_MONITOR="0")


def flood(port: int, token: str, log: Path) -> Callable[[], subprocess.Popen[bytes]]:
    """A flood of requests at the node (bench/http_flood.py), far more than it can serve,
    until the fault heals: two of them keep both cores busy."""
    argv = ["-m", "bench.http_flood", "--port", str(port), "--connections", "100", "--seconds", "3600"]
    return python_process([*argv, "--token", token], log, "faults-flood")
