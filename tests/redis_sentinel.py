"""A real Redis Sentinel installation for tests: Debian's ``redis-server`` and
``redis-sentinel`` as child processes on free loopback ports, in a folder of the test's own.

One master, one replica and three sentinels (quorum 2), with short time-outs so that a
killed master is replaced within seconds: a sentinel calls the master down after
``DOWN_AFTER_MS`` without an answer, then the sentinels elect a leader which promotes the
replica. Nothing persists on disk, as in production (the database is the truth).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.sentinel import Sentinel

from common.redis_config import SentinelConfig
from tests.processes import free_port

MASTER_NAME = "collab"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
QUORUM = 2


def available() -> bool:
    return bool(shutil.which("redis-server") and shutil.which("redis-sentinel"))


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class SentinelCluster:
    root: Path
    servers: dict[str, Server] = field(default_factory=dict)
    sentinels: list[Server] = field(default_factory=list)

    @property
    def config(self) -> SentinelConfig:
        return SentinelConfig(sentinels=tuple(s.address for s in self.sentinels), master=MASTER_NAME)

    def start(self) -> SentinelCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        master = self.servers["redis-1"] = Server("redis-1", free_port())
        replica = self.servers["redis-2"] = Server("redis-2", free_port())
        self._run_server(master, replica_of=None)
        self._run_server(replica, replica_of=master.address)
        self._wait(lambda: self._replica_in_sync(replica), "the replica in sync with the master")
        for n in range(1, 4):
            sentinel = Server(f"sentinel-{n}", free_port())
            self._run_sentinel(sentinel, master.address)
            self.sentinels.append(sentinel)
        self._wait(lambda: self.master_address() == master.address, "the sentinels agree on the master")
        self._wait(self._sentinels_know_each_other, "the sentinels know each other and the replica")
        return self

    # --- Processes ------------------------------------------------------------------------
    def _run_server(self, server: Server, *, replica_of: tuple[str, int] | None) -> None:
        folder = self.root / server.name
        folder.mkdir(exist_ok=True)
        argv = ["redis-server", "--port", str(server.port), "--bind", "127.0.0.1", "--dir", str(folder)]
        argv += ["--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
        if replica_of is not None:
            argv += ["--replicaof", *map(str, replica_of)]
        server.process = self._spawn(argv, folder / "redis.log")
        self._wait(lambda: self._answers(server.port), f"{server.name} answering")

    def _run_sentinel(self, sentinel: Server, master: tuple[str, int]) -> None:
        folder = self.root / sentinel.name
        folder.mkdir(exist_ok=True)
        conf = folder / "sentinel.conf"  # sentinels rewrite their file: one each
        conf.write_text(
            f"port {sentinel.port}\nbind 127.0.0.1\ndir {folder}\n"
            f"sentinel monitor {MASTER_NAME} {master[0]} {master[1]} {QUORUM}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        sentinel.process = self._spawn(["redis-sentinel", str(conf)], folder / "sentinel.log")
        self._wait(lambda: self._answers(sentinel.port), f"{sentinel.name} answering")

    @staticmethod
    def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    # --- What the sentinels say -------------------------------------------------------------
    def master_address(self) -> tuple[str, int] | None:
        """The master the sentinels name now (None while none answers)."""
        try:
            address = Sentinel([s.address for s in self.sentinels if s.alive], socket_timeout=0.5).discover_master(
                MASTER_NAME
            )
        except (redis.RedisError, OSError):
            return None
        return (str(address[0]), int(address[1]))

    def master(self) -> Server:
        address = self.master_address()
        return next(server for server in self.servers.values() if server.address == address)

    # --- Faults -----------------------------------------------------------------------------
    def kill_master(self) -> Server:
        """SIGKILL the current master (no goodbye to anyone); returns it."""
        master = self.master()
        assert master.process is not None
        master.process.kill()
        master.process.wait(timeout=10)
        return master

    def restart(self, server: Server) -> None:
        """Start a killed server again, as the replica of whichever master the sentinels
        name now (what an operator's configuration would say after a failover)."""
        if server.alive:
            return
        current = self.master_address()
        self._run_server(server, replica_of=current if current != server.address else None)

    def wait_promoted(self, old: Server, *, timeout: float = 30.0) -> tuple[str, int]:
        """Wait until the sentinels name another master than ``old`` and it answers as one."""

        def promoted() -> tuple[str, int] | None:
            address = self.master_address()
            if address is None or address == old.address:
                return None
            role = redis.Redis(*address, socket_timeout=0.5).role()[0]
            return address if role in (b"master", "master") else None

        return self._wait(promoted, f"a replica promoted in place of {old.name}", timeout=timeout)

    def stop(self) -> None:
        for server in [*self.sentinels, *self.servers.values()]:
            if server.alive:
                server.process.terminate()
                try:
                    server.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    server.process.kill()
                    server.process.wait()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.parent.name}\n{p.read_text(errors='replace')[-1500:]}" for p in self.root.glob("*/*.log")
        )

    # --- Waiting ---------------------------------------------------------------------------
    def _wait(self, condition, what: str, *, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = condition()
            except (redis.RedisError, OSError):
                value = None
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"Sentinel set-up: not within {timeout} s: {what}\n{self.logs()}")

    @staticmethod
    def _answers(port: int) -> bool:
        return bool(redis.Redis("127.0.0.1", port, socket_timeout=0.5).ping())

    @staticmethod
    def _replica_in_sync(replica: Server) -> bool:
        info = redis.Redis(*replica.address, socket_timeout=0.5).info("replication")
        return info.get("master_link_status") == "up"

    def _sentinels_know_each_other(self) -> bool:
        client = redis.Redis(*self.sentinels[0].address, socket_timeout=0.5)
        master = client.sentinel_master(MASTER_NAME)
        return master["num-other-sentinels"] >= len(self.sentinels) - 1 and master["num-slaves"] >= 1


def use_sentinel(settings, config: SentinelConfig) -> None:
    """Point this process at the cluster (pytest-django's ``settings`` fixture restores it);
    the children it starts follow (tests/processes.redis_env)."""
    settings.REDIS_URL = ""
    settings.REDIS_SENTINEL = config
    settings.CHANNEL_LAYERS = {
        "default": {
            **settings.CHANNEL_LAYERS["default"],
            "CONFIG": {"hosts": [config.channel_layer_host()], "prefix": "sentinel-test"},
        }
    }
