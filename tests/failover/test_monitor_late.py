"""A monitor that runs late does not blame its own slowness on healthy peers.

When the monitor's event loop is held up (too many peers for the interval, a long garbage
collection, no CPU), a peer's reply arrives in time but sits unread while the probe's
timer fires. Those time-outs are set aside (failover/monitor/loop_lag.py), at most
``fall`` in a row: a peer that really stalled meanwhile is still declared down.

The monitor is held up for real here: ``time.sleep`` on its event loop, the way a
CPU-bound stretch holds it, against a real simulator process.
"""

from __future__ import annotations

import asyncio
import http.server
import signal
import threading
import time
from collections.abc import Awaitable, Callable

from failover.choices import Health
from failover.monitor.loop_lag import LoopLag
from failover.monitor.monitor import Monitor
from failover.monitor.targets import PeerTarget, ServerTarget, ServerTimings, Timings
from failover.monitor.watchers import SERVER_SET_ASIDE_MAX, DegradedChange, PeerWatcher, ServerWatcher, Transition
from tests.peering.conftest import start_peer  # noqa: F401  (fixture)

TIMINGS = Timings(interval=0.05, timeout=0.2, rise=1, fall=3, flap_window=60.0, flap_max=10)
# Longer than the probe time-out: the probe's timer fires while the loop is held.
HOLD_SECONDS = 0.5


async def _until(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)


async def _hold_the_loop_during_the_next_probe(watcher: PeerWatcher) -> None:
    """Wait for a probe to be sent, then block the event loop past its time-out, then
    wait until that probe has ended (its time-out handled by the watcher)."""
    await _until(lambda: watcher.connection is not None and watcher.connection.calls_in_flight > 0)
    time.sleep(HOLD_SECONDS)  # noqa: ASYNC251 (blocking the loop is the point)
    await _until(lambda: watcher.connection is None or watcher.connection.calls_in_flight == 0)


def _run(watcher, lag: LoopLag, body: Callable[[], Awaitable[None]]) -> None:
    """Run ``watcher`` and the lag meter while ``body()`` acts, then stop both."""

    async def scenario() -> None:
        meter = asyncio.create_task(lag.run())
        task = asyncio.create_task(watcher.run())
        try:
            await body()
        finally:
            task.cancel()
            meter.cancel()

    asyncio.run(scenario())


def _recorder(written: list[Health]) -> Callable[[Transition], Awaitable[None]]:
    """A watcher's ``on_transition`` that notes each health it decides, in order."""

    async def write(transition: Transition) -> None:
        written.append(transition.health)

    return write


def _watch(peer, written: list[Health]) -> tuple[PeerWatcher, LoopLag]:
    lag = LoopLag()
    target = PeerTarget(1, "held-up", "media_blender", peer.host, peer.port, Health.UNKNOWN)
    return PeerWatcher(target, TIMINGS, _recorder(written), loop_lag=lag), lag


def test_the_lag_meter_sees_a_held_loop_at_once_and_remembers_only_recent_lateness():
    async def scenario() -> None:
        lag = LoopLag()
        meter = asyncio.create_task(lag.run())
        await asyncio.sleep(0.1)
        before = time.monotonic()
        time.sleep(HOLD_SECONDS)  # noqa: ASYNC251
        # Before the meter has even run again: its overdue wake-up counts.
        assert lag.worst_since(before) >= HOLD_SECONDS - lag.tick
        await asyncio.sleep(0.1)
        assert lag.worst_since(before) >= HOLD_SECONDS - lag.tick
        after = time.monotonic()
        await asyncio.sleep(0.2)
        assert lag.worst_since(after) < HOLD_SECONDS / 2
        meter.cancel()

    asyncio.run(scenario())


def test_a_healthy_peer_stays_up_through_fall_probes_timed_out_by_a_held_monitor(start_peer):  # noqa: F811
    peer = start_peer("media-blender", "--name", "held-up")
    written: list[Health] = []
    watcher, lag = _watch(peer, written)

    async def body() -> None:
        await _until(lambda: written == [Health.UP])
        # As many time-outs in a row as would declare a peer down (fall), every one
        # while the monitor was held up and the peer's reply sat unread.
        for _ in range(TIMINGS.fall):
            await _hold_the_loop_during_the_next_probe(watcher)
        await _until(lambda: watcher.figures is not None and watcher.figures.successes >= 3)

    _run(watcher, lag, body)
    assert written == [Health.UP]
    assert lag.set_aside == TIMINGS.fall


def test_a_peer_that_stalls_while_the_monitor_is_held_up_is_still_declared_down(start_peer):  # noqa: F811
    peer = start_peer("media-blender", "--name", "stalls")
    written: list[Health] = []
    watcher, lag = _watch(peer, written)
    holds = 0

    async def body() -> None:
        nonlocal holds
        await _until(lambda: written == [Health.UP])
        peer.signal(signal.SIGSTOP)
        while written == [Health.UP] and holds < 4 * TIMINGS.fall:
            await _hold_the_loop_during_the_next_probe(watcher)
            holds += 1
            await asyncio.sleep(0)  # let a decision of this probe be written

    _run(watcher, lag, body)
    assert written == [Health.UP, Health.DOWN]
    # ``fall`` time-outs set aside, then ``fall`` counted: detection slows, never stops.
    assert holds == 2 * TIMINGS.fall
    assert lag.set_aside == TIMINGS.fall


def test_without_a_held_monitor_a_stall_is_declared_down_after_fall_time_outs(start_peer):  # noqa: F811
    peer = start_peer("media-blender", "--name", "stalls-alone")
    written: list[Health] = []
    watcher, lag = _watch(peer, written)

    async def body() -> None:
        await _until(lambda: written == [Health.UP])
        peer.signal(signal.SIGSTOP)
        await _until(lambda: written == [Health.UP, Health.DOWN])

    _run(watcher, lag, body)
    # Not slowed down: the first ``fall`` time-outs counted, none set aside.
    assert lag.set_aside == 0
    assert watcher.tracker.failures == TIMINGS.fall


def test_the_monitor_warns_while_it_sets_probes_aside_and_is_quiet_otherwise(caplog):
    monitor = Monitor(holder="test-monitor")
    caplog.set_level("WARNING", logger="failover.monitor.monitor")

    monitor._report_set_aside_timeouts()
    assert caplog.records == []

    monitor.loop_lag.set_aside = 7
    monitor._report_set_aside_timeouts()
    [record] = caplog.records
    assert "running late" in record.getMessage()
    assert record.set_aside == 7
    assert record.holder == "test-monitor"

    # Counted once: the next report covers only what was set aside after this one.
    monitor._report_set_aside_timeouts()
    assert len(caplog.records) == 1


SERVER_TIMINGS = ServerTimings(
    interval=0.05, timeout=0.2, rise=1, flap_window=60.0, flap_max=10, silence=2.0, unresponsive=10.0
)


def test_a_healthy_node_is_neither_down_nor_degraded_through_health_checks_timed_out_by_a_held_monitor():
    asked = threading.Event()

    class Healthz(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            asked.set()
            # A quick healthy answer (well within the time-out), sent while the monitor is
            # already held up: it arrives in time and waits unread.
            time.sleep(0.05)
            self.send_response(200 if self.path == "/healthz" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    node = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Healthz)
    threading.Thread(target=node.serve_forever, daemon=True).start()
    written: list[Health] = []
    degraded: list[DegradedChange] = []
    lag = LoopLag()
    target = ServerTarget(1, "routing-x", f"http://127.0.0.1:{node.server_port}", Health.UP)

    async def note_degraded(change: DegradedChange) -> None:
        degraded.append(change)

    watcher = ServerWatcher(target, SERVER_TIMINGS, _recorder(written), note_degraded, loop_lag=lag)

    async def body() -> None:
        # Two time-outs in a row would make a live node "degraded"; every one of them
        # happened while the monitor was held up and the node's answer sat unread.
        for _ in range(SERVER_SET_ASIDE_MAX):
            await _until(asked.is_set)
            asked.clear()
            time.sleep(HOLD_SECONDS)  # noqa: ASYNC251
        await _until(lambda: watcher.figures is not None and watcher.figures.successes >= 2)

    try:
        _run(watcher, lag, body)
    finally:
        node.shutdown()
        node.server_close()
    assert written == []  # it was up, and was never said to be anything else
    assert degraded == []
    assert lag.set_aside == SERVER_SET_ASIDE_MAX
