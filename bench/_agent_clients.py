"""Many Agent desktops in one process, each behaving as ``static/agent/desktop.js`` and
``static/js/live.js`` make a browser behave (``bench.agent_load``).

``python -m bench._agent_clients --port P --cookies FILE --first I --count N --out FILE``
opens one desktop for each of the cookies ``I .. I+N-1`` of FILE (a JSON list, one
logged-in agent each): a ``/ws/agent/`` WebSocket (the ``websockets`` client, logged in by
its session cookie) and a pool of keep-alive HTTP/1.1 connections (at most 6, as a
browser per host). Each desktop does what the scripts do:

* the snapshot and every later event numbered above the last one seen (``live.js``:
  events at or below the snapshot's number, and duplicates, are dropped; heartbeats are
  ignored) *schedule* the fragments whose ``data-live-on`` names the event type
  (``templates/agent/desktop.html``: the state panel on ``agent.changed``
  ``server.changed``, the sessions list on ``session.changed`` ``agent.changed``); the
  snapshot and the resync (every 30 s, here with a random phase) schedule both;
* ``desktop.js``'s coalescing: every schedule (re)starts a 25 ms timer; when it fires, the
  pending fragment is fetched (``/agent/partials/state/`` or ``/agent/partials/sessions/``)
  with the headers ``fetch()`` sends, or, both being due (the snapshot, the resync, an
  agent change), the one answer holding both (``/agent/partials/desk/``, the page's
  ``data-live-all``; ``--separate``: one fetch each, as desktop.js did before), several
  in flight if need be (no throttle);
* the socket asks for the sessions list with each session change (``?push=sessions``,
  sessions/list_push.py): a pushed list is applied at once and not fetched
  (``--fetch-list``: no push, the list fetched after each change, as desktop.js did before);
* an answer is applied only if it is the newest request of its fragment (the ticket).

Nothing is swapped: the HTML is only scanned for the sessions it lists
(``data-session-id``) and the ended ones (``data-ended-id``). Per desktop it keeps, in
``time.monotonic()`` (one clock for the machine): every ``session.changed`` received
(receipt, session id, state, agent), the count of other events, every applied answer of
the sessions list (request start, answer complete, the session ids listed), every fetch
(start, fragment, status, bytes, complete) and the bytes received per second (HTTP
answers with their headers; WebSocket messages). Prints ``ready`` once every desktop has
its snapshot; on SIGUSR1 (or SIGTERM) writes ``{"desktops": [...], "errors": n,
"error_samples": [...]}`` to FILE and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import re
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._http_pool import HttpPool
from bench._live_socket import follow, report_when_stopped

COALESCE_S = 0.025  # desktop.js COALESCE_MS
# templates/agent/desktop.html: each fragment and the event types it is refreshed on.
FRAGMENTS = {
    "state": ("/agent/partials/state/", frozenset({"agent.changed", "server.changed"})),
    "sessions": ("/agent/partials/sessions/", frozenset({"session.changed", "agent.changed"})),
}
# The desktop's data-live-all: one answer holding both, each in its data-live-part, fetched
# when both are due at once (the snapshot, the resync, an agent change).
TOGETHER = "/agent/partials/desk/"
SESSIONS_PART = b'data-live-part="sessions"'
SESSION_ID = re.compile(rb'data-session-id="([0-9a-f-]{36})"')
OPEN_TIMEOUT_S = 120


class Desktop:
    """One Agent desktop: live.js's sequence rules and desktop.js's schedule/refresh."""

    def __init__(self, index: int, pool: HttpPool, errors: dict[str, Any], *, together: bool) -> None:
        self.index = index
        self.together = together
        self.pool = pool
        self.errors = errors
        self.pending: set[str] = set()
        self.flush_timer: asyncio.TimerHandle | None = None
        self.tickets = dict.fromkeys(FRAGMENTS, 0)
        self.snapshot_seq: int | None = None
        self.last_seq: int | None = None
        self.events: list[tuple[float, str, str | None, int | None]] = []  # session.changed
        self.other_events = 0
        # Applied answers of the sessions list: (request start, complete, session ids listed).
        self.swaps: list[tuple[float, float, list[str]]] = []
        self.fetches: list[tuple[float, str, int, int, float]] = []  # start, fragment, status, bytes, done
        self.bytes_by_second: dict[str, dict[int, int]] = {"http": {}, "ws": {}}
        self.tasks: set[asyncio.Task] = set()

    def count_bytes(self, at: float, size: int, channel: str) -> None:
        seconds = self.bytes_by_second[channel]
        seconds[int(at)] = seconds.get(int(at), 0) + size

    def schedule(self, event_type: str, besides: str | None = None) -> None:
        """desktop.js ``schedule``: the fragments the event refreshes (but ``besides``, pushed
        with it), after 25 ms of quiet."""
        due = {name for name, (_, types) in FRAGMENTS.items() if event_type == "*" or event_type in types}
        due.discard(besides)
        if not due:
            return
        self.pending |= due
        if self.flush_timer is not None:
            self.flush_timer.cancel()
        self.flush_timer = asyncio.get_running_loop().call_later(COALESCE_S, self.flush)

    def flush(self) -> None:
        self.flush_timer = None
        names, self.pending = sorted(self.pending), set()
        if not self.together or len(names) < 2:
            for name in names:
                self.start(self.refresh([name], FRAGMENTS[name][0]))
        else:
            self.start(self.refresh(names, TOGETHER))

    def start(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def refresh(self, names: list[str], path: str) -> None:
        """One fetch of ``path`` for the fragments ``names`` (both: the combined answer)."""
        tickets = {}
        for name in names:
            self.tickets[name] += 1
            tickets[name] = self.tickets[name]
        started = time.monotonic()
        try:
            answer = await self.pool.get(path)
            status, size, body = answer.status, answer.size, answer.body
        except Exception as exc:  # noqa: BLE001 (counted: the next event or resync retries, as the page does)
            self.error(exc)
            return
        done = time.monotonic()
        self.count_bytes(done, size, "http")
        self.fetches.append((started, "+".join(names), status, size, done))
        if status != 200:
            self.error(RuntimeError(f"GET {path}: {status}"))
            return
        if "sessions" in names and self.tickets["sessions"] == tickets["sessions"]:
            part = body.partition(SESSIONS_PART)[2] if len(names) > 1 else body
            ids = [match.decode() for match in SESSION_ID.findall(part)]
            self.swaps.append((started, done, ids))

    def error(self, exc: BaseException) -> None:
        self.errors["errors"] += 1
        if len(self.errors["error_samples"]) < 20:
            self.errors["error_samples"].append(f"desktop {self.index}: {exc!r}"[:200])

    def on_message(self, raw: str | bytes, at: float) -> None:
        self.count_bytes(at, len(raw), "ws")
        try:
            message = json.loads(raw)
        except ValueError:
            return
        kind = message.get("type")
        if kind == "heartbeat":
            return
        if kind == "snapshot":
            self.snapshot_seq = self.last_seq = message.get("seq")
            self.schedule("*")
            return
        seq = message.get("seq")
        if self.snapshot_seq is None or not isinstance(seq, int) or seq <= (self.last_seq or 0):
            return
        self.last_seq = seq
        data = message.get("data") or {}
        if kind == "session.changed":
            self.events.append((at, str(data.get("id")), data.get("state"), data.get("agent")))
        else:
            self.other_events += 1
        pushed = (message.get("html") or {}).get("sessions")
        if isinstance(pushed, str):
            # desktop.js applyPushed: the list came with the event; no fetch of it is due.
            self.tickets["sessions"] += 1
            self.pending.discard("sessions")
            self.swaps.append((at, at, [match.decode() for match in SESSION_ID.findall(pushed.encode())]))
            self.schedule(str(kind), besides="sessions")
            return
        self.schedule(str(kind))

    def result(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "events": self.events,
            "other_events": self.other_events,
            "swaps": self.swaps,
            "fetches": self.fetches,
            "bytes": self.bytes_by_second,
        }


async def main_async(args: argparse.Namespace) -> None:
    url = f"ws://127.0.0.1:{args.port}/ws/agent/" + ("" if args.fetch_list else "?push=sessions")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGUSR1, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    errors: dict[str, Any] = {"errors": 0, "error_samples": []}
    cookies = json.loads(Path(args.cookies).read_text())[args.first : args.first + args.count]
    desktops, tasks = [], []
    ready: asyncio.Queue = asyncio.Queue()
    for offset, cookie in enumerate(cookies):
        desktop = Desktop(args.first + offset, HttpPool(args.port, cookie), errors, together=not args.separate)
        desktops.append(desktop)
        headers = {"Cookie": cookie, "Origin": f"http://127.0.0.1:{args.port}"}
        resync = functools.partial(desktop.schedule, "*")
        follows = follow(desktop, url, headers, ready, stop, resync=resync, open_timeout=OPEN_TIMEOUT_S)
        tasks.append(asyncio.create_task(follows))
        await asyncio.sleep(args.spread / max(1, len(cookies)))  # agents open their desktops over a while
    await report_when_stopped(
        tasks, ready, stop, args.out, lambda: {"desktops": [desktop.result() for desktop in desktops], **errors}
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cookies", required=True, help="a JSON list of session cookies, one agent each")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--spread", type=float, default=0.0, help="seconds over which the desktops open")
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--separate", action="store_true", help="one fetch per fragment always (desktop.js before the combined answer)"
    )
    parser.add_argument(
        "--fetch-list",
        action="store_true",
        help="the sessions list fetched after each change (desktop.js before the push)",
    )
    asyncio.run(main_async(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
