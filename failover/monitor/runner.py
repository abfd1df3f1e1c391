"""Running the monitor: in a node's ASGI process (lifespan), as a command, or in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator

from failover.monitor.monitor import Monitor
from failover.monitor.node_heartbeat import NodeHeartbeat
from failover.monitor.peer_events import dispatch_peer_event

log = logging.getLogger(__name__)

# How long a stopping node waits for its monitor to hand the lease on before it stops
# listening (the monitor's own shutdown is one database write).
MONITOR_STOP_SECONDS = 3.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class MonitorLifespan:
    """ASGI lifespan app: every node runs a monitor beside its web server, and beats.

    Only the holder of the lease probes; when that node dies, another node's monitor
    takes over within the lease's time-to-live (see docs/architecture.md). A node of a
    named server (``heartbeat_server``) also writes its heartbeat every second, monitor
    or not: it is how the monitor tells this node busy from gone.

    Graceful stop (SIGTERM, SIGINT): the monitor stops *first*, giving its lease up in the
    database so another node's monitor takes over at once, and only then does the web
    server stop listening and close its connections (WebSockets with 1012, "service
    restart", which the desktops take as "reconnect now"). The other order was a trap: a
    node whose socket was already closed probed itself refused and declared its own server
    failed, ending every session on it.
    """

    def __init__(self, enabled: bool, *, heartbeat_server: str = "") -> None:
        self.enabled = enabled
        self.heartbeat_server = heartbeat_server

    async def __call__(self, scope: dict, receive, send) -> None:
        stop, monitor_stop = asyncio.Event(), asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.heartbeat_server:
                    beat = NodeHeartbeat(self.heartbeat_server).run(stop)
                    tasks.append(asyncio.create_task(beat, name="node-heartbeat"))
                if self.enabled:
                    monitor = asyncio.create_task(_supervise(monitor_stop), name="health-monitor")
                    tasks.append(monitor)
                    stop_monitor_first(monitor, monitor_stop)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                stop.set()
                monitor_stop.set()
                if tasks:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=5)
                await send({"type": "lifespan.shutdown.complete"})
                return


def stop_monitor_first(monitor: asyncio.Task[None], monitor_stop: asyncio.Event) -> None:
    """Put this node's monitor stop in front of the web server's own SIGTERM/SIGINT handling.

    The web server (uvicorn) installed its handlers before the lifespan started; each is
    wrapped so that the signal first stops the monitor (which releases its lease) and,
    once it has stopped or ``MONITOR_STOP_SECONDS`` passed, hands the signal on. Only in
    the main thread (where signals are delivered); elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        previous = signal.getsignal(signum)
        if not callable(previous):
            continue

        def handler(sig: int, frame: object, previous: Callable = previous) -> None:
            if monitor_stop.is_set():
                previous(sig, frame)  # a second signal: no more waiting
                return
            loop.call_soon_threadsafe(_begin_stop, monitor, monitor_stop, previous, sig, frame)

        signal.signal(signum, handler)


# The stops under way (a task nobody references may be collected before it runs).
_stopping: set[asyncio.Task[None]] = set()


def _begin_stop(
    monitor: asyncio.Task[None], monitor_stop: asyncio.Event, previous: Callable, sig: int, frame: object
) -> None:
    monitor_stop.set()
    task = asyncio.get_running_loop().create_task(_then(monitor, previous, sig, frame))
    _stopping.add(task)
    task.add_done_callback(_stopping.discard)


async def _then(monitor: asyncio.Task[None], previous: Callable, sig: int, frame: object) -> None:
    """Once the monitor has stopped (lease released), let the web server stop."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.shield(monitor), timeout=MONITOR_STOP_SECONDS)
    log.info(
        "monitor stopped before the node stops listening",
        extra={"event": "monitor_stopped_for_shutdown", "ms": round((loop.time() - started) * 1000, 1)},
    )
    previous(sig, frame)


async def _supervise(stop: asyncio.Event) -> None:
    """Restart the monitor after an unexpected error instead of leaving the node blind."""
    while not stop.is_set():
        try:
            await Monitor(on_event=dispatch_peer_event).run(stop)
        except Exception:
            log.exception("health monitor crashed; restarting in 1 s")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await stop.wait()


def run_forever() -> None:
    """Blocking: run the monitor until SIGINT/SIGTERM (``manage.py runmonitor``)."""
    import signal

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await _supervise(stop)

    asyncio.run(main())


@contextlib.contextmanager
def monitor_in_thread(*, holder: str = "test-monitor") -> Iterator[Monitor]:
    """Run a monitor on its own event loop in a thread for the duration of the block."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    monitor = Monitor(holder=holder, on_event=dispatch_peer_event)

    def target() -> None:
        asyncio.set_event_loop(loop)
        from asgiref.sync import sync_to_async
        from django.db import connections

        try:
            loop.run_until_complete(monitor.run(stop))
        finally:
            # The monitor's queries ran in asgiref's worker thread: close its connections
            # there, or the database sees a session left open after the block.
            loop.run_until_complete(sync_to_async(connections.close_all)())
            connections.close_all()
            loop.close()

    thread = threading.Thread(target=target, name=f"monitor-{holder}", daemon=True)
    thread.start()
    try:
        yield monitor
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=15)
