"""Stall detection from heartbeats (issue 16, point 2), against real simulator processes.

With the default policy a peer that offers heartbeats pushes one every 100 ms over the
monitor's held connection, and the monitor declares it down when its silence becomes
suspicious (phi accrual, failover/monitor/phi.py). A peer from before heartbeats
(``--no-heartbeat``) is still probed, as before.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import pytest

from failover.choices import FailoverKind, Health, PeerKind, PeerPriority
from failover.models import FailoverEvent, Link, Peer, Policy
from failover.monitor.loop_lag import LoopLag
from failover.monitor.runner import monitor_in_thread
from failover.monitor.targets import PeerTarget, Timings
from failover.monitor.watchers import PeerWatcher, Transition
from tests.factories import PeerFactory
from tests.peering.conftest import start_peer  # noqa: F401  (fixture)
from tests.waiting import wait_until

# SIGSTOP of the connected peer to the standby connected, default policy: the silence is
# suspected after about 0.33 s on a quiet machine (docs/architecture.md, "Stalled peers"),
# and the busy test machine gets the rest of this second. bench/failover_stall measures it.
STALL_BOUND_S = 1.0
BUSY_SECONDS = 15


def connected_name(link: Link) -> str | None:
    return link.peers().filter(connection="connected").values_list("name", flat=True).first()


def settled(link: Link) -> tuple[str, str]:
    wait_until(
        lambda: connected_name(link) and link.peers().filter(health=Health.UP).count() == 2,
        timeout=10,
        message="both peers up and one connected",
    )
    active = connected_name(link)
    return active, ({"mb-1", "mb-2"} - {active}).pop()


def start_pair(server, start_peer, *extra: str):  # noqa: F811
    processes = {name: start_peer("media-blender", "--name", name, *extra) for name in ("mb-1", "mb-2")}
    for priority, name in enumerate(["mb-1", "mb-2"], start=PeerPriority.PRIMARY):
        PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=priority, name=name, port=processes[name].port)
    return Link.objects.get(server=server, kind=PeerKind.MEDIA_BLENDER), processes


def watcher_of(monitor, name: str) -> PeerWatcher:
    peer_id = Peer.objects.get(name=name).pk
    return wait_until(lambda: (monitor.peer_watchers.get(peer_id) or (None, None))[1], timeout=10, message=name)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_stopped_peer_is_replaced_by_its_standby_within_the_heartbeat_bound(server, start_peer):  # noqa: F811
    policy = Policy.current()
    assert (policy.heartbeat_interval_ms, policy.heartbeat_suspicion) == (100, 8.0)
    link, processes = start_pair(server, start_peer)
    with monitor_in_thread() as monitor:
        active, standby = settled(link)
        wait_until(lambda: watcher_of(monitor, active).detector is not None, timeout=5, message="heartbeats")
        time.sleep(2)  # a history of heartbeats to judge by

        stopped_at = time.time()
        processes[active].signal(signal.SIGSTOP)
        try:
            wait_until(lambda: connected_name(link) == standby, timeout=10, message="switch to the standby")
        finally:
            processes[active].signal(signal.SIGCONT)
        # Back from the stop, the peer stays standby (failover is non-preemptive).
        wait_until(lambda: Peer.objects.get(name=active).health == Health.UP, timeout=10, message="up again")
        assert connected_name(link) == standby

    event = FailoverEvent.objects.get(link=link, kind=FailoverKind.AUTOMATIC)
    assert "heartbeat: silent for" in event.reason
    # Timed by the switchover's own record, not by this test's polling of the database.
    assert event.completed_at.timestamp() - stopped_at < STALL_BOUND_S, event.reason


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_peer_from_before_heartbeats_is_probed_and_its_stop_still_switches(server, start_peer):  # noqa: F811
    link, processes = start_pair(server, start_peer, "--no-heartbeat")
    with monitor_in_thread() as monitor:
        active, standby = settled(link)
        watcher = watcher_of(monitor, active)
        wait_until(lambda: watcher.tracker.successes >= 4, timeout=10, message="probes answered")
        assert watcher.detector is None

        processes[active].signal(signal.SIGSTOP)
        try:
            wait_until(lambda: connected_name(link) == standby, timeout=10, message="switch to the standby")
        finally:
            processes[active].signal(signal.SIGCONT)
    event = FailoverEvent.objects.get(link=link, kind=FailoverKind.AUTOMATIC)
    assert "timeout" in event.reason


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_healthy_peers_on_a_machine_made_busy_by_two_busy_loops_are_never_switched(server, start_peer):  # noqa: F811
    link, processes = start_pair(server, start_peer)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        with monitor_in_thread() as monitor:
            active, standby = settled(link)
            watchers = [watcher_of(monitor, name) for name in (active, standby)]
            wait_until(lambda: all(w.detector is not None for w in watchers), timeout=5, message="heartbeats")
            changes = [len(w.tracker.changes) for w in watchers]

            time.sleep(BUSY_SECONDS)

            assert all(w.detector is not None for w in watchers), "a connection was dropped"
            assert [len(w.tracker.changes) for w in watchers] == changes
    finally:
        for loop in busy:
            loop.kill()
            loop.wait()
    assert not FailoverEvent.objects.filter(link=link, kind=FailoverKind.AUTOMATIC).exists()
    assert connected_name(link) == active


# --- The late-monitor set-aside, with heartbeats ---------------------------------------

TIMINGS = Timings(interval=0.5, timeout=0.4, rise=2, fall=2, flap_window=60.0, flap_max=10, heartbeat_interval=0.1)
HOLD_SECONDS = 0.8  # twice the silence that is suspected at the floor of the spread


async def _until(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def _run_watcher(peer, body: Callable[[PeerWatcher], Awaitable[None]]) -> list[Health]:
    written: list[Health] = []

    async def record(transition: Transition) -> None:
        written.append(transition.health)

    async def scenario() -> None:
        lag = LoopLag()
        target = PeerTarget(1, "mb", "media_blender", peer.host, peer.port, Health.UNKNOWN)
        watcher = PeerWatcher(target, TIMINGS, record, loop_lag=lag)
        tasks = [asyncio.create_task(lag.run()), asyncio.create_task(watcher.run())]
        try:
            await _until(lambda: written == [Health.UP] and watcher.detector is not None)
            await body(watcher)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())
    return written


def test_a_monitor_held_up_past_the_suspicious_silence_does_not_blame_a_healthy_peer(start_peer):  # noqa: F811
    peer = start_peer("media-blender", "--name", "held-up")

    async def body(watcher: PeerWatcher) -> None:
        for _ in range(3):
            await asyncio.sleep(0.5)
            time.sleep(HOLD_SECONDS)  # noqa: ASYNC251 (blocking the loop is the point)
        await asyncio.sleep(0.5)

    assert _run_watcher(peer, body) == [Health.UP]


def test_a_pause_of_the_whole_machine_monitor_and_peer_alike_is_not_blamed_on_the_peer(start_peer):  # noqa: F811
    """A virtual machine paused, or both processes starved of CPU: the silence is the
    monitor's as much as the peer's, and the monitor's own lateness is taken off it."""
    peer = start_peer("media-blender", "--name", "paused")

    async def body(watcher: PeerWatcher) -> None:
        for _ in range(3):
            await asyncio.sleep(0.5)
            peer.signal(signal.SIGSTOP)
            time.sleep(HOLD_SECONDS)  # noqa: ASYNC251
            # The peer wakes a moment after the monitor does, as machines' processes do.
            asyncio.get_running_loop().call_later(0.03, peer.signal, signal.SIGCONT)
        await asyncio.sleep(0.5)

    assert _run_watcher(peer, body) == [Health.UP]


def test_a_peer_that_stops_while_the_monitor_is_held_up_is_still_declared_down(start_peer):  # noqa: F811
    peer = start_peer("media-blender", "--name", "stops")

    async def body(watcher: PeerWatcher) -> None:
        await asyncio.sleep(0.5)
        peer.signal(signal.SIGSTOP)
        time.sleep(HOLD_SECONDS)  # noqa: ASYNC251
        await _until(lambda: watcher.tracker.health == Health.DOWN, timeout=5)

    assert _run_watcher(peer, body) == [Health.UP, Health.DOWN]
