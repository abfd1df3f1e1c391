"""Many Administration pages in one process, each behaving as ``static/console/console.js``
and ``static/js/live.js`` make a browser behave (``bench.desktop_load``).

``python -m bench._desktop_clients --port P --cookie C --pages overview,sessions,... --out FILE``
opens one "page" per entry: a ``/ws/status/`` WebSocket (the ``websockets`` client, logged
in by session cookie) and a pool of keep-alive HTTP/1.1 connections (at most 6, as a
browser per host). Each page does what the scripts do:

* the socket asks for the newest event per 200 ms only (``?coalesce=1``) and not to be
  sent what the page ignores (the overview's ``data-live-ignore``:
  ``/ws/status/?coalesce=1&ignore=agent.changed,session.changed``);
* the snapshot, and every later event numbered above the last one seen whose type the
  page does not ignore, *schedule* a refresh that must show at least that number;
  heartbeats are ignored; a resync schedules one every 30 s that needs the server's
  current number (the page's ``setInterval``, here with a random phase, pages being
  opened at different moments);
* refreshes are throttled as console.js throttles them: at most one in flight, starts at
  least ``MIN_INTERVAL_MS`` (200 ms) apart, the first at once, the events that come
  meanwhile making one refresh after it;
* the socket also asks for the fragment's render with the events (``&push=<the fragment's
  URL>``, as console.js does for the overview and the sessions page;
  console/pushed_fragments.py); a pushed render (``{"type": "fragment"}``) is applied as a
  fetched answer is (newer only; a delta only onto the render it was made from, else a
  refresh), and after each fetched answer the page tells the socket which render it shows.
  ``--no-push`` emulates the pages before that (or a node with ``LIVE_PUSH=0``);
* a refresh fetches the page's fragment (``/partials/overview/`` or
  ``/console/sessions/?fragment=1``, plus ``live_seq=N`` unless it needs the current
  number) with the headers ``fetch()`` sends, ``X-Live-Base`` naming the render the page
  shows (console/live_blocks.py: the answer may then leave out the blocks the page
  has; one made for another version is not applied, a refresh follows); the answer is
  applied if its version
  (``X-Live-Seq``, ``X-Live-Rendered``) is newer than the page's, an answer without one
  only if it is the newest request's (the ``ticket``), as in console.js; a refresh due
  for events that the applied answer already reflects is dropped.

Nothing is parsed or swapped: the HTML is only counted. Per page it keeps every *applied*
refresh as (request start, answer complete) in ``time.monotonic()`` (one clock for the
machine), the start of every fetch, the end and size of every answer and, per second,
the bytes received (HTTP answers with their headers; the WebSocket's bytes as they came
on the wire, compressed by per-message deflate). Prints
``ready`` once every page has its snapshot; on SIGUSR1 (or SIGTERM) writes
``{"pages": [...], "errors": n, "error_samples": [...]}`` to FILE and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gzip
import json
import math
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from bench._http_pool import Answer, HttpPool
from bench._live_socket import follow, report_when_stopped

MIN_INTERVAL_S = 0.2  # console.js MIN_INTERVAL_MS
# console.js's data-live-ignore, as templates/console/overview.html sets it.
IGNORED = {"overview": frozenset({"session.changed", "agent.changed"}), "sessions": frozenset()}
FRAGMENTS = {"overview": "/partials/overview/", "sessions": "/console/sessions/?fragment=1"}


def live_version(answer: Answer) -> tuple[int, int] | None:
    """(X-Live-Seq, X-Live-Rendered) of a fragment's answer, or None (the server sent none)."""
    seq, rendered = answer.number(b"x-live-seq"), answer.number(b"x-live-rendered")
    return (seq, rendered) if seq is not None and rendered is not None else None


class Page:
    """One Administration page: console.js's schedule/refresh and live.js's sequence rules."""

    def __init__(self, kind: str, pool: HttpPool, errors: dict[str, Any], push: bool = True) -> None:
        self.kind = kind
        self.push = push
        self.socket: Any = None  # set by bench._live_socket.follow once open
        self.path = FRAGMENTS[kind]
        self.pool = pool
        self.errors = errors
        self.ignored = IGNORED[kind]
        self.timer: asyncio.TimerHandle | None = None
        self.ticket = 0
        self.wanted = -math.inf  # the newest number the next refresh must show
        self.pending = False
        self.in_flight = False
        self.last_start = -math.inf
        self.shown = (-1, -1)  # the version on the page
        self.snapshot_seq: int | None = None
        self.last_seq: int | None = None
        self.swaps: list[tuple[float, float]] = []
        self.fetches: list[float] = []  # start of every fetch
        # (complete, bytes, X-Live-Seq, X-Live-Rendered or None) of every answer
        self.answers: list[tuple[float, int, int | None, int | None]] = []
        # (received, bytes, seq, rendered) of every pushed render
        self.pushes: list[tuple[float, int, int, int]] = []
        self.bytes_by_second: dict[str, dict[int, int]] = {"http": {}, "ws": {}}
        self.tasks: set[asyncio.Task] = set()

    def count_bytes(self, at: float, size: int, channel: str) -> None:
        seconds = self.bytes_by_second[channel]
        seconds[int(at)] = seconds.get(int(at), 0) + size

    def schedule(self, seq: float) -> None:
        """A refresh that shows at least event ``seq`` (``math.inf``: the server's current number)."""
        self.wanted = max(self.wanted, seq)
        self.pending = True
        self.pump()

    def pump(self) -> None:
        if not self.pending or self.in_flight or self.timer is not None:
            return
        wait = self.last_start + MIN_INTERVAL_S - time.monotonic()
        if wait > 0:
            self.timer = asyncio.get_running_loop().call_later(wait, self._timer_fired)
            return
        seq, self.wanted, self.pending = self.wanted, -math.inf, False
        self.in_flight, self.last_start = True, time.monotonic()
        task = asyncio.create_task(self.refresh(seq))
        self.tasks.add(task)
        task.add_done_callback(self._refreshed)

    def _timer_fired(self) -> None:
        self.timer = None
        self.pump()

    def _refreshed(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        self.in_flight = False
        self.pump()

    def newer(self, version: tuple[int, int] | None, mine: int) -> bool:
        return mine == self.ticket if version is None else version > self.shown

    async def refresh(self, seq: float) -> None:
        self.ticket += 1
        mine = self.ticket
        started = time.monotonic()
        self.fetches.append(started)
        path = self.path if math.isinf(seq) else f"{self.path}{'&' if '?' in self.path else '?'}live_seq={int(seq)}"
        # As console.js: name the render the page shows; the answer may then carry only
        # the blocks the page lacks (console/live_blocks.py).
        base = f"{self.shown[0]}.{self.shown[1]}" if self.shown[0] >= 0 else None
        try:
            answer = await self.pool.get(path, {"X-Live-Base": base} if base else None)
        except Exception as exc:  # noqa: BLE001 (counted: the next event or resync retries, as the page does)
            self.error(exc)
            return
        done = time.monotonic()
        status, size, version = answer.status, answer.size, live_version(answer)
        self.count_bytes(done, size, "http")
        self.answers.append((done, size, *(version or (None, None))))
        if status != 200:
            self.error(RuntimeError(f"GET {self.path}: {status}"))
        elif self.newer(version, mine):
            delta = answer.headers.get(b"x-live-delta")
            if self.apply(version, delta.decode() if delta is not None else None, started, done) and self.push:
                await self.tell_shown()

    def apply(self, version: tuple[int, int] | None, delta: str | None, started: float, done: float) -> bool:
        """Show an answer (fetched or pushed) as console.js's apply() does."""
        base = f"{self.shown[0]}.{self.shown[1]}"
        if delta is not None and delta != base:  # made for another version: useless
            self.schedule(version[0] if version else math.inf)
            return False
        self.shown = version or self.shown
        if self.pending and self.wanted <= self.shown[0]:  # already in it: no refresh due
            self.pending, self.wanted = False, -math.inf
        # The render's own start when the server says it (a shared render may be older
        # than this request): what the page shows is the database as of then.
        since = started if version is None else time.monotonic() - (time.time() - version[1] / 1000)
        self.swaps.append((since, done))
        return True

    async def tell_shown(self) -> None:
        if self.socket is not None:
            try:
                await self.socket.send(json.dumps({"type": "shown", "version": f"{self.shown[0]}.{self.shown[1]}"}))
            except Exception as exc:  # noqa: BLE001 (counted, as a failed fetch is)
                self.error(exc)

    def pushed(self, message: dict[str, Any], at: float, size: int) -> None:
        version = (message.get("seq"), message.get("rendered"))
        if not all(isinstance(part, int) for part in version):
            return
        self.pushes.append((at, size, *version))
        if version > self.shown:
            self.apply(version, message.get("delta"), at, at)

    def error(self, exc: BaseException) -> None:
        self.errors["errors"] += 1
        if len(self.errors["error_samples"]) < 20:
            self.errors["error_samples"].append(f"{self.kind}: {exc!r}"[:200])

    def count_wire(self, size: int) -> None:
        """Bytes the socket received, as they came on the wire (bench._live_socket)."""
        self.count_bytes(time.monotonic(), size, "ws")

    def on_message(self, raw: str | bytes, at: float) -> None:
        try:
            # A pushed fragment is gzipped JSON in a binary frame (static/js/live.js).
            message = json.loads(gzip.decompress(raw) if isinstance(raw, bytes) else raw)
        except (ValueError, OSError):
            return
        if message.get("type") == "heartbeat":
            return
        if message.get("type") == "snapshot":
            self.snapshot_seq = self.last_seq = message.get("seq")
            self.shown = (-1, -1)  # console.js: a new snapshot may start a new numbering
            self.schedule(self.snapshot_seq if isinstance(self.snapshot_seq, int) else math.inf)
            return
        seq = message.get("seq")
        if self.snapshot_seq is None or not isinstance(seq, int) or seq <= (self.last_seq or 0):
            return
        self.last_seq = seq
        if message.get("type") == "fragment":
            self.pushed(message, at, len(raw))
        elif message.get("type") not in self.ignored:
            self.schedule(seq)

    def result(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "swaps": self.swaps,
            "fetches": self.fetches,
            "bytes": self.bytes_by_second,
            "answers": self.answers,
            "pushes": self.pushes,
        }


def socket_url(url: str, page: Page) -> str:
    """As console.js: the newest event per 200 ms only (``?coalesce=1``), not what the
    page ignores (``?ignore=``), the fragment's render with the events (``?push=``)."""
    query = {"coalesce": "1"}
    if page.ignored:
        query["ignore"] = ",".join(sorted(page.ignored))
    if page.push:
        query["push"] = page.path
    return f"{url}?{urlencode(query)}"


async def main_async(args: argparse.Namespace) -> None:
    url = f"ws://127.0.0.1:{args.port}/ws/status/"
    headers = {"Cookie": args.cookie, "Origin": f"http://127.0.0.1:{args.port}"}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGUSR1, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    errors: dict[str, Any] = {"errors": 0, "error_samples": []}
    kinds = [kind for kind in args.pages.split(",") if kind]
    pages = [Page(kind, HttpPool(args.port, args.cookie), errors, push=args.push) for kind in kinds]
    ready: asyncio.Queue = asyncio.Queue()
    tasks = [
        asyncio.create_task(
            follow(page, socket_url(url, page), headers, ready, stop, resync=functools.partial(page.schedule, math.inf))
        )
        for page in pages
    ]
    result = lambda: {"pages": [page.result() for page in pages], **errors}  # noqa: E731
    await report_when_stopped(tasks, ready, stop, args.out, result)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cookie", required=True)
    parser.add_argument("--pages", required=True, help="comma-separated: overview or sessions, one per page")
    parser.add_argument("--out", required=True)
    parser.add_argument("--no-push", dest="push", action="store_false", help="fetch after each event (no ?push=)")
    asyncio.run(main_async(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
