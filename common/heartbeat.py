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
import contextlib

from asgiref.sync import sync_to_async
from django.conf import settings

from common import live


def heartbeat_seconds() -> float:
    # A setting so tests can hear one without waiting; 3 s keeps a restart well inside 10 s.
    return float(getattr(settings, "LIVE_HEARTBEAT_SECONDS", 3.0))


class HeartbeatMixin:
    """For ``AsyncJsonWebsocketConsumer``s: call ``start_heartbeat`` after the snapshot,
    ``stop_heartbeat`` on disconnect."""

    _heartbeat: asyncio.Task[None] | None = None

    def start_heartbeat(self) -> None:
        self._heartbeat = asyncio.create_task(self._beat(), name="live-heartbeat")

    async def stop_heartbeat(self) -> None:
        task, self._heartbeat = self._heartbeat, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def still_allowed(self) -> bool:
        """Override: re-check the user's access (once per heartbeat); False closes the socket."""
        return True

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(heartbeat_seconds())
            if not await self.still_allowed():
                return
            run_id = await sync_to_async(live.redis_run_id, thread_sensitive=False)()
            if run_id is not None:
                await self.send_json({"type": "heartbeat", "redis": run_id})  # type: ignore[attr-defined]
