"""A web node's own heartbeat: a row stamped every second, from the node's event loop.

The monitor can then tell a busy node from a gone one (failover/monitor/server_evidence.py):
a node that answers ``/healthz`` late but keeps beating is alive, a node whose beats stop
while ``/healthz`` goes unanswered is stopped, hung or cut off.

The beat is scheduled on the event loop on purpose: a node whose loop is wedged serves
nobody, so it must stop beating. The write itself runs on a thread of its own (never the
HTTP pool's), so a queue of HTTP requests cannot delay it; a write still running when
the next beat falls due is not doubled up, the beat is skipped and the row ages, which
is what it should do when the database cannot keep up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor

from django.db import close_old_connections, connections

from common.http_load import http_load
from failover.services.heartbeats import BeatFigures, node_heartbeat_record

log = logging.getLogger(__name__)

BEAT_SECONDS = 1.0
# A failing write is logged at most this often (the database may be away for minutes).
LOG_EVERY_SECONDS = 30.0


def node_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class NodeHeartbeat:
    """Beats for ``server_name`` until ``stop`` is set (one per node process)."""

    def __init__(self, server_name: str, *, node: str | None = None) -> None:
        self.server_name = server_name
        self.node = node or node_name()
        self.beats_written = 0
        self._logged_at = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="node-heartbeat")
        writing: asyncio.Future[bool] | None = None
        try:
            due = time.monotonic()
            while not stop.is_set():
                late = max(0.0, time.monotonic() - due)
                if writing is None or writing.done():
                    writing = loop.run_in_executor(executor, self._write, self._figures(late))
                # A loop that woke very late starts afresh instead of beating in a burst.
                due = max(due + BEAT_SECONDS, time.monotonic())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(due - time.monotonic()):
                        await stop.wait()
        finally:
            # Bounded: a database that hangs must not hold up the node's shutdown.
            with contextlib.suppress(Exception):
                if writing is not None:
                    await asyncio.wait_for(writing, timeout=2)
                await asyncio.wait_for(loop.run_in_executor(executor, connections.close_all), timeout=2)
            executor.shutdown(wait=False)

    @staticmethod
    def _figures(late: float) -> BeatFigures:
        waiting, worst_wait = http_load.sample()
        return BeatFigures(loop_late_ms=late * 1000, http_waiting=waiting, http_wait_ms=worst_wait * 1000)

    def _write(self, figures: BeatFigures) -> bool:
        """On the heartbeat's own thread: write one beat; a database error is logged, and
        the broken connection dropped so that the next beat connects afresh (a restarted
        database leaves this long-lived thread with a dead connection otherwise)."""
        try:
            written = node_heartbeat_record(server_name=self.server_name, node=self.node, figures=figures)
        except Exception:
            close_old_connections()
            self._log_now_and_then("could not write the node's heartbeat", exc_info=True)
            return False
        if written:
            self.beats_written += 1
        else:
            self._log_now_and_then("no server of this node's name: no heartbeat written")
        return written

    def _log_now_and_then(self, message: str, **kwargs) -> None:
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_SECONDS:
            self._logged_at = now
            log.warning(message, extra={"server": self.server_name, "node": self.node}, **kwargs)
