"""Heartbeats on the desktops' WebSockets: how a page learns that Redis restarted.

A Redis restart loses the channel layer's subscriptions and every event sent while it was
down, yet the browser's socket may stay open and hear nothing wrong. Every
``LIVE_HEARTBEAT_SECONDS`` (3) each socket sends ``{"type": "heartbeat", "redis": RUN_ID}``; the
snapshot carries the same ``redis`` field. A page that sees a different run id reconnects
and gets a fresh snapshot (static/js/live.js), so it is back in sync within a heartbeat
and a reconnect of Redis coming back: well inside the 10 s the product promises.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

from asgiref.sync import sync_to_async
from django.conf import settings

from common import live

log = logging.getLogger(__name__)


# The run id is one for the whole process: each socket asking it through a thread on every
# beat was a thread hop per socket every 3 s (333 a second with 1,000 Agent desktops open,
# bench.agent_load) for an answer ``live.redis_run_id`` mostly read from its own cache. The
# sockets of the process now share one ask every half second; a restart is still seen
# within a beat and a second and a half.
RUN_ID_SHARED_SECONDS = 0.5
_asked: tuple[float, str | None] = (-math.inf, None)


async def shared_run_id() -> str | None:
    """``live.redis_run_id()``, asked through a thread at most every ``RUN_ID_SHARED_SECONDS``
    by the sockets of this process (an event loop's coroutines: no lock needed)."""
    global _asked
    at, run_id = _asked
    now = time.monotonic()
    if run_id is not None and now - at < RUN_ID_SHARED_SECONDS:
        return run_id
    run_id = await sync_to_async(live.redis_run_id, thread_sensitive=False)()
    _asked = (now, run_id)
    return run_id


def heartbeat_seconds() -> float:
    # A setting so tests can hear one without waiting; 3 s keeps a restart well inside 10 s.
    return float(getattr(settings, "LIVE_HEARTBEAT_SECONDS", 3.0))


class HeartbeatMixin:
    """For ``AsyncJsonWebsocketConsumer``s: call ``start_heartbeat`` after the snapshot,
    ``stop_heartbeat`` on disconnect.

    Also makes a send to a browser that has gone harmless. uvicorn raises
    ``ClientDisconnected`` (an ``OSError``) from a send after the client dropped its
    connection; raised from a live event or a heartbeat, it ended the consumer before its
    ``disconnect`` ran, so the socket's subscriptions stayed and the heartbeat task failed
    unobserved ("Task exception was never retrieved", issue 15). A failed send is dropped
    instead: the server's ``websocket.disconnect`` follows, and ``disconnect`` cleans up.
    """

    _heartbeat: asyncio.Task[None] | None = None
    client_gone = False

    async def send_json(self, content: object, close: bool = False) -> None:
        if self.client_gone:
            return
        try:
            await super().send_json(content, close=close)  # type: ignore[misc]
        except OSError as exc:  # uvicorn's ClientDisconnected; the disconnect message follows
            self.client_gone = True
            log.debug("a send to a WebSocket client that has gone was dropped: %r", exc)

    def start_heartbeat(self) -> None:
        self._heartbeat = asyncio.create_task(self._beat(), name="live-heartbeat")

    async def stop_heartbeat(self) -> None:
        task, self._heartbeat = self._heartbeat, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                # Retrieved here, so it is logged once and never as "never retrieved".
                log.exception("the live heartbeat failed")

    async def still_allowed(self) -> bool:
        """Override: re-check the user's access (once per heartbeat); False closes the socket."""
        return True

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(heartbeat_seconds())
            if not await self.still_allowed():
                return
            run_id = await shared_run_id()
            if run_id is not None:
                await self.send_json({"type": "heartbeat", "redis": run_id})  # type: ignore[attr-defined]
