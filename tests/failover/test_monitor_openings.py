"""A monitor opens only so many peer connections at once (watchers.OPENINGS_AT_ONCE).

Regression: with 4,000 peers at a 1 s interval, every watcher opened its connection as it
fell due. The openings stalled the monitor's loop past the probe time-out, each time-out
made one more down peer to retry every interval, and about half of the healthy peers
were declared down and never came back (docs/performance.md, monitoring scale). The
peers here are a real process that accepts connections and never answers (a stalled
peer's listener): every opening waits out its whole time-out, the worst case for the
number of openings in flight.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from failover.choices import Health
from failover.monitor.targets import PeerTarget, Timings
from failover.monitor.watchers import OPENINGS_AT_ONCE, PeerWatcher, Transition

PEERS = 4 * OPENINGS_AT_ONCE
TIMINGS = Timings(interval=0.2, timeout=0.3, rise=2, fall=2, flap_window=60.0, flap_max=10)

# Listens on PEERS ports, accepts every connection and never writes; keeps, in a file,
# how many connections are open at once at most and how many were accepted in all.
SILENT_PEERS = r"""
import asyncio, json, sys
count, out = int(sys.argv[1]), sys.argv[2]
state = {"open": 0, "most_open": 0, "accepted": 0}
def save():
    with open(out + ".tmp", "w") as f:
        json.dump(state, f)
    import os; os.replace(out + ".tmp", out)
async def silent(reader, writer):
    state["open"] += 1; state["accepted"] += 1
    state["most_open"] = max(state["most_open"], state["open"]); save()
    try:
        await reader.read()
    finally:
        state["open"] -= 1; writer.close()
async def main():
    servers = [await asyncio.start_server(silent, "127.0.0.1", 0, backlog=1024) for _ in range(count)]
    save()
    print(" ".join(str(s.sockets[0].getsockname()[1]) for s in servers), flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


@pytest.fixture
def silent_peers(tmp_path: Path):
    figures = tmp_path / "figures.json"
    process = subprocess.Popen(
        [sys.executable, "-c", SILENT_PEERS, str(PEERS), str(figures)], stdout=subprocess.PIPE, text=True
    )
    try:
        ports = [int(port) for port in process.stdout.readline().split()]
        assert len(ports) == PEERS, "the silent peers' process did not start"
        yield ports, lambda: json.loads(figures.read_text())
    finally:
        process.kill()
        process.wait()


def test_openings_in_flight_stay_within_the_gate_while_every_peer_is_silent(silent_peers):
    ports, figures = silent_peers
    transitions: list[Transition] = []

    def down() -> set[int]:
        return {t.target_id for t in transitions if t.health == Health.DOWN}

    async def record(transition: Transition) -> None:
        transitions.append(transition)

    async def scenario() -> None:
        openings = asyncio.Semaphore(OPENINGS_AT_ONCE)
        watchers = [
            PeerWatcher(
                PeerTarget(n, f"silent-{n}", "media_blender", "127.0.0.1", port, Health.UP),
                TIMINGS,
                record,
                openings=openings,
            )
            for n, port in enumerate(ports)
        ]
        tasks = [asyncio.create_task(watcher.run()) for watcher in watchers]
        try:
            # Silent peers are still judged: each one's turn comes, and each is found down.
            async with asyncio.timeout(30):
                while len(down()) < PEERS:
                    await asyncio.sleep(0.05)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())
    seen = figures()
    # Without the gate all PEERS watchers opened at once (most_open == PEERS).
    assert seen["most_open"] <= OPENINGS_AT_ONCE, seen
    assert seen["accepted"] >= 2 * PEERS  # fall = 2: every peer was tried twice
    assert down() == set(range(PEERS))
