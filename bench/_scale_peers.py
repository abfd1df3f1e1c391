"""Many Media Blender simulators in one process, counting the probes they receive.

``python -m bench._scale_peers --count N --stats FILE`` serves ``N`` real simulated peers
(``failover.peering.simulator.serve``, the simulator's own machinery) on free ports,
prints the simulator's ready line, and on every SIGUSR1 writes to ``FILE`` (JSON) what it
saw since the previous SIGUSR1: how many signs of life (pings answered, heartbeats pushed),
and the gaps between successive ones of the same peer (the effective probe or heartbeat
period: the monitor's interval plus its lag, or the heartbeat interval the monitor asked for).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from failover.peering.media_blender_simulator import MediaBlender
from failover.peering.simulator import ControlServer, PeerSimulator, serve


class Counter:
    def __init__(self) -> None:
        self.last: dict[int, float] = {}
        self.gaps: list[float] = []
        self.pings = 0
        self.since = time.monotonic()

    def ping(self, port: int) -> None:
        now = time.monotonic()
        self.pings += 1
        previous = self.last.get(port)
        if previous is not None:
            self.gaps.append(now - previous)
        self.last[port] = now

    def report(self, path: Path) -> None:
        now = time.monotonic()
        gaps = sorted(self.gaps)

        def pct(p: float) -> float | None:
            return gaps[min(len(gaps) - 1, int(len(gaps) * p / 100))] if gaps else None

        data = {
            "seconds": now - self.since,
            "pings": self.pings,
            "peers_pinged": len({p for p in self.last if self.last[p] >= self.since}),
            "gaps": len(gaps),
            "gap_p50": pct(50),
            "gap_p99": pct(99),
            "gap_max": gaps[-1] if gaps else None,
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)
        self.gaps, self.pings, self.since = [], 0, now


COUNTER = Counter()


class CountingMediaBlender(MediaBlender):
    """Counts every sign of life the monitor gets from this peer: a ping it answered, or
    a heartbeat it pushed (a monitor following heartbeats sends no pings)."""

    async def handle_request(self, conn: Any, name: str, args: dict[str, Any]) -> dict[str, Any]:
        if name == "ping":
            COUNTER.ping(self.port)
        return await super().handle_request(conn, name, args)

    def _beat(self, conn: Any, interval: float, due: float, seq: int) -> None:
        if not conn.closing:
            COUNTER.ping(self.port)
        super()._beat(conn, interval, due, seq)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--stats", required=True)
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, args.count * 4 + 64))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    peers = [CountingMediaBlender(name="scale-{port}", port=0) for _ in range(args.count)]
    stats = Path(args.stats)

    def ready(started: Sequence[PeerSimulator], control: ControlServer | None) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, COUNTER.report, stats)
        ports = ",".join(str(p.port) for p in started)
        print(f"ready kind=media-blender name=scale port={started[0].port} ports={ports} count={len(started)}")
        sys.stdout.flush()

    asyncio.run(serve(peers, on_ready=ready))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
