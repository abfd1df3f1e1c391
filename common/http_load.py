"""How long this process's HTTP requests wait for a thread: the node's own view of being busy.

HTTP views run on a fixed pool of threads (a2wsgi, collabadmin/asgi.py). A node given more
requests than its threads can serve queues them; the wait before a request reaches a
thread is what makes the node slow for its users, and it is invisible from outside
(``/healthz`` is answered ahead of the queue). The node's heartbeat reports it
(failover/monitor/node_heartbeat.py), so the monitor can call a saturated node *degraded*
and the director can send new callers elsewhere.

:class:`HttpLoad` is fed by two thin wrappers: :meth:`HttpLoad.asgi` notes each request's
arrival on the event loop, :meth:`HttpLoad.wsgi` notes when a pool thread starts it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

ARRIVED_KEY = "collabadmin.arrived"

Asgi = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]
Wsgi = Callable[[dict, Callable[..., Any]], Iterable[bytes]]


class HttpLoad:
    """Requests waiting for a thread, and the longest wait since the last :meth:`sample`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[int, float] = {}  # id(scope) -> arrival (monotonic)
        self._worst_started = 0.0

    def arrived(self, scope: dict) -> None:
        key = id(scope)
        scope[ARRIVED_KEY] = key
        with self._lock:
            self._waiting[key] = time.monotonic()

    def started(self, scope: dict | None) -> None:
        key = scope.get(ARRIVED_KEY) if scope else None
        if key is None:
            return
        with self._lock:
            arrived = self._waiting.pop(key, None)
            if arrived is not None:
                self._worst_started = max(self._worst_started, time.monotonic() - arrived)

    def finished(self, scope: dict) -> None:
        # A request that never reached a thread (the client went away first) stops waiting.
        with self._lock:
            self._waiting.pop(scope.get(ARRIVED_KEY, -1), None)

    def sample(self) -> tuple[int, float]:
        """(requests waiting now, the longest wait in seconds since the previous sample:
        of a request that started meanwhile, or of one still waiting)."""
        now = time.monotonic()
        with self._lock:
            waiting = len(self._waiting)
            oldest = now - min(self._waiting.values()) if self._waiting else 0.0
            worst, self._worst_started = max(oldest, self._worst_started), 0.0
        return waiting, worst

    def asgi(self, app: Asgi) -> Asgi:
        """Wrap the ASGI app that queues HTTP requests for the thread pool."""

        async def measured(scope: dict, receive, send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            self.arrived(scope)
            try:
                await app(scope, receive, send)
            finally:
                self.finished(scope)

        return measured

    def wsgi(self, app: Wsgi) -> Wsgi:
        """Wrap the WSGI app the pool's threads run (a2wsgi puts the scope in the environ)."""

        def measured(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
            self.started(environ.get("asgi.scope"))
            return app(environ, start_response)

        return measured


# One per process: the node's HTTP stack feeds it, its heartbeat samples it.
http_load = HttpLoad()
