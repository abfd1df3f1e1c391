"""One HAProxy process in front of a peer pair, its health checks read from its stats socket:
the balancer that the failover benchmarks (bench/failover_crash.py) and their side-by-side
table (bench/haproxy_side_by_side.py) measure against. A module of its own so that neither
imports the other."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench._common import BenchError, free_port

HAPROXY = "/usr/sbin/haproxy"
PING = b'{"id":1,"op":"ping"}\n'
OK = b'"ok":true'
BACKENDS = {
    # name: (server options, backend lines)
    "default": ("check inter 2s fall 3 rise 2", []),
    "tuned": ("check inter 500ms fastinter 50ms fall 2 rise 2", ["timeout check 400ms"]),
}
POLL_SECONDS = 0.005
UP, DOWN = 2, 0


def haproxy_version() -> str:
    try:
        out = subprocess.run([HAPROXY, "-v"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return "missing"
    return out.split()[2] if out.startswith("HAProxy version") else out.splitlines()[0]


class HAProxy:
    """One HAProxy process with the two backends over ``ports`` (active, backup)."""

    def __init__(self, stack: Any, ports: tuple[int, int]) -> None:
        self.stack = stack
        self.ports = ports
        self.dir: Path = stack.run_dir / "haproxy"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sock = self.dir / "stats.sock"
        self.frontends = {name: free_port() for name in BACKENDS}
        # (monotonic, backend, server, op_state, served_by) in order of observation.
        self.changes: list[tuple[float, str, str, int, str | None]] = []
        self.state: dict[tuple[str, str], int] = {}
        self.lock = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="haproxy-poller", daemon=True)
        self.child: Any = None

    def config(self) -> str:
        lines = [
            "global",
            f"    stats socket {self.sock} mode 600 level admin",
            "    nbthread 1",
            "defaults",
            "    mode tcp",
            "    timeout connect 5s",
            "    timeout client 30s",
            "    timeout server 30s",
        ]
        for name, (options, extra) in BACKENDS.items():
            lines += [
                f"frontend fe_{name}",
                f"    bind 127.0.0.1:{self.frontends[name]}",
                f"    default_backend be_{name}",
                f"backend be_{name}",
                *(f"    {line}" for line in extra),
                "    option tcp-check",
                "    tcp-check connect",
                f"    tcp-check send-binary {PING.hex()}",
                f"    tcp-check expect binary {OK.hex()}",
                f"    server mb1 127.0.0.1:{self.ports[0]} {options}",
                f"    server mb2 127.0.0.1:{self.ports[1]} {options} backup",
            ]
        return "\n".join(lines) + "\n"

    def start(self) -> HAProxy:
        from bench._stack import Child

        if not Path(HAPROXY).exists():
            raise BenchError(f"{HAPROXY} is missing: apt-get install -y haproxy")
        path = self.dir / "haproxy.cfg"
        path.write_text(self.config())
        check = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True)
        if check.returncode != 0:
            raise BenchError(f"haproxy rejects its configuration:\n{check.stdout}{check.stderr}")
        argv = [HAPROXY, "-db", "-f", str(path)]
        self.child = self.stack.track(Child("haproxy", argv, self.stack.peer_env(), self.dir / "haproxy.log").start())
        deadline = time.monotonic() + 10
        while not self.sock.exists():
            if time.monotonic() > deadline or not self.child.alive:
                raise BenchError("haproxy did not open its stats socket")
            time.sleep(0.02)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        if self.child is not None:
            self.child.stop()

    def command(self, text: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(2)
            client.connect(str(self.sock))
            client.sendall(text.encode() + b"\n")
            chunks = []
            while chunk := client.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def served_by(self, backend: str) -> str | None:
        """Which simulator answers a ping sent through the backend's frontend (None: nobody)."""
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.frontends[backend]), 1) as conn:
            conn.settimeout(1)
            conn.sendall(PING)
            data = b""
            while b"\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            text = data.decode(errors="replace")
            if '"name":"' in text:
                return text.split('"name":"', 1)[1].split('"', 1)[0]
        return None

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                text = self.command("show servers state")
            except OSError:
                time.sleep(POLL_SECONDS)
                continue
            at = time.monotonic()
            for line in text.splitlines():
                fields = line.split()
                if len(fields) < 6 or not fields[0].isdigit():
                    continue
                backend, server, op_state = fields[1].removeprefix("be_"), fields[3], int(fields[5])
                key = (backend, server)
                if self.state.get(key) == op_state:
                    continue
                served = None
                if server == "mb1" and op_state == DOWN and key in self.state:
                    served = self.served_by(backend)
                with self.lock:
                    self.state[key] = op_state
                    self.changes.append((at, backend, server, op_state, served))
                    self.lock.notify_all()
            time.sleep(POLL_SECONDS)

    def all_up(self) -> bool:
        with self.lock:
            return all(self.state.get((b, s)) == UP for b in BACKENDS for s in ("mb1", "mb2"))

    def wait_all_up(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.all_up():
            if time.monotonic() > deadline:
                raise BenchError(f"haproxy: not every server UP within {timeout} s: {self.state}")
            time.sleep(0.05)

    def wait_down(self, backend: str, since: float, timeout: float) -> tuple[float | None, str | None]:
        """(time mb1 was seen DOWN after ``since``, who answered through the frontend then)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for at, b, server, op_state, served in self.changes:
                    if at >= since and b == backend and server == "mb1" and op_state == DOWN:
                        return at, served
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None, None
                self.lock.wait(remaining)
