"""The product's balancer, ``deploy/haproxy.cfg``, in front of a benchmark's web nodes
(``bench.desktop_load --nodes 2``).

HAProxy runs the shipped file with its addresses from the environment, as the systemd
unit and ``tests/deploy/test_haproxy.py`` run it: HTTP mode, ``balance roundrobin`` over
routing-a and routing-b (every request and every WebSocket is balanced on its own), the
``/readyz`` health check, the same time-outs and retries. One thing is added, to the
frontend only, for the measurement: the answer's ``X-Live-Seq`` and ``X-Live-Rendered``
are captured into the request log (``option httplog``, to stdout), so each answer is
known by the node that sent it and the render it carried. Balancing, checks and
time-outs are the file's own.

:func:`parse_log` reads that log back: per answer, the node, its path, status, the
node's answer time (``Tr``) and the render; :meth:`Balancer.server_stats` reads
``show stat`` from the admin socket.
"""

from __future__ import annotations

import csv
import io
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench._common import REPO_ROOT, BenchError, free_port, tail

HAPROXY = "/usr/sbin/haproxy"
SHIPPED = REPO_ROOT / "deploy" / "haproxy.cfg"
BACKEND = "routing_servers"
FRAGMENTS_BACKEND = "live_fragments"  # the live fragments' fetches, by view (same servers)
SERVERS = ("routing-a", "routing-b")  # the file's two servers, ROUTING_A and ROUTING_B
ANCHOR = "    default_backend routing_servers\n"
CAPTURES = (
    "    # bench.desktop_load: the render each answer carried, in the request log\n"
    "    capture response header X-Live-Seq len 20\n"
    "    capture response header X-Live-Rendered len 20\n"
)

# option httplog, "log stdout format raw": client [accept date] frontend backend/server
# TR/Tw/Tc/Tr/Ta status bytes ... {captured response headers} "METHOD path HTTP/1.1"
LOG_LINE = re.compile(
    r"\[(?P<accepted>\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d\.\d{3})\] \S+ "
    rf"(?:{BACKEND}|{FRAGMENTS_BACKEND})/(?P<server>\S+) (?P<timers>\S+) (?P<status>-?\d+) (?P<bytes>\d+) "
    r'.*?(?:\{(?P<captures>[^}]*)\} )?"(?P<method>[A-Z]+) (?P<path>\S+)'
)


@dataclass
class Answer:
    accepted_ms: float  # when HAProxy accepted the request (wall clock, ms since the epoch)
    server: str
    path: str  # without the query string
    status: int
    node_ms: int | None  # Tr: the node's time to the answer's headers (-1 in the log: none)
    seq: int | None
    rendered_ms: int | None


def parse_log(path: Path) -> list[Answer]:
    answers = []
    for line in path.read_text(errors="replace").splitlines():
        match = LOG_LINE.search(line)
        if match is None:
            continue
        # The accept date is the machine's local time.
        accepted = datetime.strptime(match["accepted"], "%d/%b/%Y:%H:%M:%S.%f").astimezone().timestamp() * 1000
        timers = match["timers"].split("/")
        node_ms = int(timers[3]) if len(timers) == 5 and timers[3].lstrip("-").isdigit() else None
        seq = rendered = None
        if match["captures"]:
            values = match["captures"].split("|")
            if len(values) == 2 and all(v.isdigit() for v in values):
                seq, rendered = int(values[0]), int(values[1])
        answers.append(
            Answer(
                accepted,
                match["server"],
                match["path"].split("?", 1)[0],
                int(match["status"]),
                node_ms if node_ms is None or node_ms >= 0 else None,
                seq,
                rendered,
            )
        )
    return answers


class Balancer:
    """HAProxy running (a copy of) deploy/haproxy.cfg in front of two nodes' ports."""

    def __init__(self, stack: Any, ports: list[int], host: str, name: str) -> None:
        if len(ports) != len(SERVERS):
            raise BenchError(f"deploy/haproxy.cfg balances {len(SERVERS)} nodes, not {len(ports)}")
        self.stack = stack
        self.dir: Path = stack.run_dir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sock = self.dir / "stats.sock"
        self.config = self.dir / "haproxy.cfg"
        self.log = self.dir / "haproxy.log"
        self.port = free_port()
        self.env = {
            **stack.peer_env(),
            "COLLAB_BIND": f"127.0.0.1:{self.port}",
            "COLLAB_HOST": host,
            "HAPROXY_STATS_SOCKET": str(self.sock),
            **{f"ROUTING_{'AB'[i]}": f"127.0.0.1:{port}" for i, port in enumerate(ports)},
        }
        self.child: Any = None

    def start(self, timeout: float = 30.0) -> Balancer:
        from bench._stack import Child

        if not Path(HAPROXY).exists():
            raise BenchError(f"{HAPROXY} is missing: apt-get install -y haproxy")
        shipped = SHIPPED.read_text()
        if shipped.count(ANCHOR) != 1:
            raise BenchError(f"{SHIPPED}: no single {ANCHOR.strip()!r} line to add the captures after")
        self.config.write_text(shipped.replace(ANCHOR, ANCHOR + CAPTURES))
        check = subprocess.run([HAPROXY, "-c", "-f", str(self.config)], env=self.env, capture_output=True, text=True)
        if check.returncode != 0:
            raise BenchError(f"haproxy rejects its configuration:\n{check.stdout}{check.stderr}")
        argv = [HAPROXY, "-db", "-f", str(self.config)]
        self.child = self.stack.track(Child("haproxy", argv, self.env, self.log).start())
        deadline = time.monotonic() + timeout
        while True:
            if not self.child.alive:
                raise BenchError(f"haproxy exited\n{tail(self.log)}")
            try:
                if all(self.server_stats()[s]["status"] == "UP" for s in SERVERS):
                    return self
            except (OSError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"haproxy: both nodes not UP within {timeout} s\n{tail(self.log)}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()

    def server_stats(self) -> dict[str, dict[str, str]]:
        """``show stat`` of the backend's servers, by server name."""
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(5)
            conn.connect(str(self.sock))
            conn.sendall(b"show stat\n")
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
        return {row["svname"]: row for row in rows if row["pxname"] == BACKEND and row["svname"] in SERVERS}
