"""Running the monitor: in a node's ASGI process (lifespan), as a command, or in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator

from failover.monitor.monitor import Monitor
from failover.monitor.node_heartbeat import NodeHeartbeat
from failover.monitor.peer_events import dispatch_peer_event

log = logging.getLogger(__name__)


class MonitorLifespan:
    """ASGI lifespan app: every node runs a monitor beside its web server, and beats.

    Only the holder of the lease probes; when that node dies, another node's monitor
    takes over within the lease's time-to-live (see docs/architecture.md). A node of a
    named server (``heartbeat_server``) also writes its heartbeat every second, monitor
    or not: it is how the monitor tells this node busy from gone.
    """

    def __init__(self, enabled: bool, *, heartbeat_server: str = "") -> None:
        self.enabled = enabled
        self.heartbeat_server = heartbeat_server

    async def __call__(self, scope: dict, receive, send) -> None:
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.heartbeat_server:
                    beat = NodeHeartbeat(self.heartbeat_server).run(stop)
                    tasks.append(asyncio.create_task(beat, name="node-heartbeat"))
                if self.enabled:
                    tasks.append(asyncio.create_task(_supervise(stop), name="health-monitor"))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                stop.set()
                if tasks:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=5)
                await send({"type": "lifespan.shutdown.complete"})
                return


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
