"""Coalescing on a desktop's socket: at most one live event per window, the newest.

A console page does one thing with an event: it refreshes its fragment from the server,
asking for a render that reflects the event's number (static/console/console.js), and it
refreshes at most every 200 ms whatever it hears. In a busy centre the sessions page hears
50 session events a second; sending each one to each page was most of a node's event-loop
work with 50 such pages (docs/performance.md, issue 18) and bought the page nothing: every
event after the first of a 200 ms window only moved the number of the next refresh.

So a socket that asks for it (``?coalesce=1``, as console.js does) gets the first event of
a quiet spell at once and then at most one event per :data:`WINDOW_SECONDS`: the newest,
whose number covers the ones left out (a fragment rendered for it reflects them all). A
script that needs every change asks nothing and gets every change, as before.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

# console.js's MIN_INTERVAL_MS: the page would not refresh sooner anyway.
WINDOW_SECONDS = 0.2


class CoalescingMixin:
    """For the desktops' consumers (with ``send_json``): ``send_event`` instead of
    ``send_json`` for live events; ``stop_coalescing`` on disconnect."""

    coalescing = False
    _last_sent = -math.inf
    _pending: dict[str, Any] | None = None
    _flush: asyncio.TimerHandle | None = None
    _flushing: asyncio.Future[None] | None = None

    async def send_event(self, event: dict[str, Any]) -> None:
        if not self.coalescing:
            await self.send_json(event)  # type: ignore[attr-defined]
            return
        loop = asyncio.get_running_loop()
        if self._flush is None and loop.time() - self._last_sent >= WINDOW_SECONDS:
            self._last_sent = loop.time()
            await self.send_json(event)  # type: ignore[attr-defined]
            return
        if self._pending is None or (event.get("seq") or 0) > (self._pending.get("seq") or 0):
            self._pending = event
        if self._flush is None:
            self._flush = loop.call_at(self._last_sent + WINDOW_SECONDS, self._send_pending)

    def _send_pending(self) -> None:
        self._flush = None
        event, self._pending = self._pending, None
        if event is not None:
            self._last_sent = asyncio.get_running_loop().time()
            self._flushing = asyncio.ensure_future(self.send_json(event))  # type: ignore[attr-defined]

    def stop_coalescing(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._pending = None
