"""Side by side with HAProxy (issue 7, point 3): the same two simulator processes, the same kill.

One HAProxy process (Debian's ``haproxy``, ``/usr/sbin/haproxy``) checks the Media Blender
pair of the failover benchmarks as an active/backup pair, in two backends:

* ``be_default``: its default check timing, ``check inter 2s fall 3 rise 2``;
* ``be_tuned``: our default Policy's timing, ``inter 500ms fastinter 50ms fall 2 rise 2``
  with ``timeout check 400ms`` (probe interval 500 ms, time-out 400 ms, fall 2, and the
  50 ms re-probe after a failure that our monitor also does).

The check is a ``tcp-check`` that speaks the simulator's line protocol: connect, send
``{"id":1,"op":"ping"}``, expect ``"ok":true``. A plain ``check`` (TCP connect only) would
see a SIGKILL the same way (the port refuses) but never a SIGSTOP: the kernel still
accepts connections for a stopped process. HAProxy's state is read from its stats socket
(``show servers state``) every 5 ms; the moment the active server is seen ``DOWN`` is its
detection time, and a request through the backend's frontend right then shows that the
backup answers. Our figure is the database's (the standby connected), measured in the very
same trials; the ratio is ours / HAProxy's.

Run: ``.venv/bin/python -m bench.haproxy_side_by_side [--quick] [--trials N]`` runs crash
and stall trials (``bench.failover_crash`` and ``bench.failover_stall`` already measure
HAProxy in their trials; ``bench.run`` reuses their results instead of running twice).
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._common import BenchError, format_table, free_port, percentile, write_results

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


# --- the side-by-side table ----------------------------------------------------------------------


def side_by_side(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of ours / HAProxy from the trials of the crash and stall benchmarks."""
    rows = []
    for scenario, data in results.items():
        trials = data.get("trials", [])
        ours = [t["db_s"] for t in trials if t.get("db_s") is not None]
        for backend in BACKENDS:
            theirs = [t[f"haproxy_{backend}_s"] for t in trials if t.get(f"haproxy_{backend}_s") is not None]
            if not ours or not theirs:
                continue
            backup_ok = sum(1 for t in trials if t.get(f"haproxy_{backend}_served_by", "").endswith("-mb-2"))
            ours50, ours99 = percentile(ours, 50), percentile(ours, 99)
            theirs50, theirs99 = percentile(theirs, 50), percentile(theirs, 99)
            rows.append(
                {
                    "scenario": scenario,
                    "haproxy": backend,
                    "haproxy_options": BACKENDS[backend][0],
                    "n": min(len(ours), len(theirs)),
                    "ours_p50_s": round(ours50, 3),
                    "ours_p99_s": round(ours99, 3),
                    "haproxy_p50_s": round(theirs50, 3),
                    "haproxy_p99_s": round(theirs99, 3),
                    "ratio_p50": round(ours50 / theirs50, 3) if theirs50 else None,
                    "ratio_p99": round(ours99 / theirs99, 3) if theirs99 else None,
                    "backup_served": f"{backup_ok}/{len(theirs)}",
                }
            )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    headers = ["scenario", "HAProxy", "n", "ours p50/p99 s", "HAProxy p50/p99 s", "ours/HAProxy p50", "p99", "backup"]
    return format_table(
        headers,
        [
            [
                r["scenario"],
                f"{r['haproxy']} ({r['haproxy_options']})",
                r["n"],
                f"{r['ours_p50_s']:.3f} / {r['ours_p99_s']:.3f}",
                f"{r['haproxy_p50_s']:.3f} / {r['haproxy_p99_s']:.3f}",
                f"{r['ratio_p50']:.3f}" if r["ratio_p50"] is not None else "-",
                f"{r['ratio_p99']:.3f}" if r["ratio_p99"] is not None else "-",
                r["backup_served"],
            ]
            for r in rows
        ],
    )


def figures(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Summary rows for ``bench.run``: far ahead of the default, no slower than the tuned one."""
    out = []
    for r in rows:
        if r["haproxy"] == "default":
            target, ok = "ratio p99 ≤ 0.5 (far ahead)", r["ratio_p99"] is not None and r["ratio_p99"] <= 0.5
        else:
            target, ok = "ratio p99 ≤ 1.0", r["ratio_p99"] is not None and r["ratio_p99"] <= 1.0
        out.append(
            {
                "benchmark": "haproxy_side_by_side",
                "figure": f"{r['scenario']}: ours/HAProxy {r['haproxy']} (DB)",
                "value": f"p50 {r['ratio_p50']} · p99 {r['ratio_p99']} "
                f"(HAProxy p50 {r['haproxy_p50_s']:.3f} / p99 {r['haproxy_p99_s']:.3f} s)",
                "target": target,
                "met": ok,
            }
        )
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 trials per scenario (a smoke run)")
    parser.add_argument("--trials", type=int, default=None, help="trials per scenario (default 20)")
    parser.add_argument("--output", default="haproxy_side_by_side")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from bench import failover_crash

    args = parse_args(argv)
    trials = args.trials or (5 if args.quick else 20)
    results = failover_crash.run_scenarios(["crash", "stall"], trials=trials, haproxy=True, soak_seconds=0)
    rows = side_by_side(results)
    print(table(rows))
    data = {
        "benchmark": "haproxy_side_by_side",
        "haproxy_version": haproxy_version(),
        "rows": rows,
        "figures": figures(rows),
        "scenarios": results,
    }
    print(f"\nwritten: {write_results(args.output, data)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
