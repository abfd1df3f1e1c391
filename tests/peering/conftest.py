"""Fixtures that run REAL simulator processes (``python -m failover.peering``) on free ports.

Nothing here needs Django or a database: run with ``python -m pytest -p no:django tests/peering``.
"""

from __future__ import annotations

import asyncio
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 10.0
T = TypeVar("T")


@dataclass
class PeerProcess:
    """A running simulator process. Unpacks as ``host, port, process``."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    control_port: int | None
    ready: dict[str, str]
    log_path: Path
    argv: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.host, self.port, self.process))

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL and reap: a real crash, no cleanup code runs in the simulator."""
        self.process.kill()
        self.process.wait(timeout=5)

    def ctl(self, *words: str, via_control: bool = False) -> subprocess.CompletedProcess[str]:
        """Run the ``ctl`` command line against this peer (through the control port if asked)."""
        argv = [sys.executable, "-m", "failover.peering", "ctl", "--port", str(self.port)]
        if via_control:
            argv += ["--control-port", str(self.control_port)]
        return subprocess.run(
            [*argv, *words], cwd=REPO_ROOT, env=peer_env(), capture_output=True, text=True, timeout=20, check=False
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def peer_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}


def read_ready_line(proc: subprocess.Popen[bytes], log_path: Path, timeout: float) -> str:
    """The first stdout line, waiting at most ``timeout`` seconds; fails with the process's log."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                proc.kill()
                pytest.fail(f"simulator not ready within {timeout} s; log:\n{log_path.read_text()}")
            if selector.select(remaining):
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    proc.wait(timeout=5)
                    pytest.fail(f"simulator exited with {proc.returncode} before ready; log:\n{log_path.read_text()}")
                buffer += chunk
    return buffer.split(b"\n", 1)[0].decode()


def parse_ready_line(line: str) -> dict[str, str]:
    """``ready kind=... port=...`` -> ``{"kind": ..., "port": ...}``."""
    word, *pairs = line.split()
    assert word == "ready", line
    return dict(pair.split("=", 1) for pair in pairs)


def spawn(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv, cwd=REPO_ROOT, env={**peer_env(), **(env or {})}, stdout=subprocess.PIPE, stderr=log
        )


@pytest.fixture
def start_peer(tmp_path: Path) -> Iterator[Callable[..., PeerProcess]]:
    """``start_peer(kind, *extra_args)`` starts a simulator on a free port with a control
    port and returns once it printed its ready line. Every process is SIGCONT-ed (in case a
    test stopped it) and SIGKILL-ed at teardown.

    ``launcher`` replaces ``python -m failover.peering`` (e.g. ``manage.py runpeer``);
    ``env`` adds environment variables.
    """
    started: list[PeerProcess] = []

    def start(
        kind: str, *extra: str, launcher: list[str] | None = None, env: dict[str, str] | None = None
    ) -> PeerProcess:
        log_path = tmp_path / f"{kind}-{len(started)}.log"
        prefix = launcher or [sys.executable, "-m", "failover.peering"]
        argv = [*prefix, kind, "--control-port", "0", *extra]
        if "--port" not in extra and "--ports" not in extra:
            argv += ["--port", "0"]
        proc = spawn(argv, log_path, env)
        ready = parse_ready_line(read_ready_line(proc, log_path, READY_TIMEOUT_S))
        control = ready.get("control_port", "none")
        peer = PeerProcess(
            host="127.0.0.1",
            port=int(ready["port"]),
            process=proc,
            control_port=None if control == "none" else int(control),
            ready=ready,
            log_path=log_path,
            argv=argv,
        )
        started.append(peer)
        return peer

    yield start
    for peer in started:
        if peer.process.poll() is None:
            peer.process.send_signal(signal.SIGCONT)
            peer.process.kill()
        peer.process.wait(timeout=5)
        if peer.process.stdout is not None:
            peer.process.stdout.close()


@pytest.fixture
def media_blender(start_peer: Callable[..., PeerProcess]) -> PeerProcess:
    """A Media Blender simulator process named ``mb-test``."""
    return start_peer("media-blender", "--name", "mb-test")


@pytest.fixture
def admin_workstation(start_peer: Callable[..., PeerProcess], tmp_path: Path) -> PeerProcess:
    """An Admin Workstation simulator process persisting to ``tmp_path / "aw.json"``."""
    return start_peer("admin-workstation", "--name", "aw-test", "--data", str(tmp_path / "aw.json"))


@pytest.fixture
def run() -> Callable[[Coroutine[Any, Any, T]], T]:
    """``run(coroutine)``: run a test scenario on a fresh event loop, bounded to 20 s so a
    hang fails the test instead of the suite."""

    def runner(coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
        async def bounded() -> T:
            return await asyncio.wait_for(coro, timeout)

        return asyncio.run(bounded())

    return runner
