"""Many Administration pages in one process, each behaving as ``static/console/console.js``
and ``static/js/live.js`` make a browser behave (``bench.desktop_load``).

``python -m bench._desktop_clients --port P --cookie C --pages overview,sessions,... --out FILE``
opens one "page" per entry: a ``/ws/status/`` WebSocket (the ``websockets`` client, logged
in by session cookie) and a pool of keep-alive HTTP/1.1 connections (at most 6, as a
browser per host). Each page does what the scripts do:

* the snapshot, and every later event numbered above the last one seen, *schedule* a
  refresh: a 100 ms debounce that every new event restarts (``DEBOUNCE_MS`` of
  console.js); heartbeats are ignored; a resync schedules one every 30 s (the page's
  ``setInterval``, here with a random phase, pages being opened at different moments);
* a refresh fetches the page's fragment (``/partials/overview/`` or
  ``/console/sessions/?fragment=1``) with the headers ``fetch()`` sends; only the newest
  request may be applied (the ``ticket``), as in console.js.

Nothing is parsed or swapped: the HTML is only counted. Per page it keeps every *applied*
refresh as (request start, answer complete) in ``time.monotonic()`` (one clock for the
machine), the start of every fetch, the end and size of every answer and, per second,
the bytes received (HTTP answers with their headers; WebSocket messages). Prints
``ready`` once every page has its snapshot; on SIGUSR1 (or SIGTERM) writes
``{"pages": [...], "errors": n, "error_samples": [...]}`` to FILE and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

DEBOUNCE_S = 0.1  # console.js DEBOUNCE_MS
RESYNC_S = 30.0  # live.js resyncMs
MAX_CONNECTIONS = 6  # a browser's connections per host (HTTP/1.1)
FRAGMENTS = {"overview": "/partials/overview/", "sessions": "/console/sessions/?fragment=1"}


class HttpPool:
    """Keep-alive HTTP/1.1 connections to the node; a GET reads the whole answer."""

    def __init__(self, port: int, cookie: str) -> None:
        self.port = port
        self.head = (
            f"Host: 127.0.0.1:{port}\r\nCookie: {cookie}\r\nX-Requested-With: fetch\r\nAccept: */*\r\n"
            "Accept-Encoding: gzip, deflate, br, zstd\r\nCache-Control: no-cache\r\nPragma: no-cache\r\n"
            "Connection: keep-alive\r\n\r\n"
        )
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.open = 0
        self.freed = asyncio.Condition()

    async def _take(self, fresh: bool) -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter], bool]:
        """(a connection, whether it was used before)."""
        async with self.freed:
            while not self.idle and self.open >= MAX_CONNECTIONS:
                await self.freed.wait()
            if self.idle and not fresh:
                return self.idle.pop(), True
            if not self.idle:
                self.open += 1
            else:
                self.idle.pop()[1].close()  # a new one in its place
        return await asyncio.open_connection("127.0.0.1", self.port, limit=2**20), False

    async def _give(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
        async with self.freed:
            if conn is None:
                self.open -= 1
            else:
                self.idle.append(conn)
            self.freed.notify()

    async def get(self, path: str) -> tuple[int, int]:
        """(status, bytes received) of one GET. A kept-alive connection the server has closed
        meanwhile (uvicorn closes them after 5 s idle) is retried once on a new one, as a
        browser does."""
        for fresh in (False, True):
            conn, reused = await self._take(fresh)
            try:
                reader, writer = conn
                writer.write(f"GET {path} HTTP/1.1\r\n{self.head}".encode())
                await writer.drain()
                status, size = await _read_answer(reader)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                conn[1].close()
                await self._give(None)
                if reused and not isinstance(exc, asyncio.IncompleteReadError):
                    continue
                raise
            except BaseException:
                conn[1].close()
                await self._give(None)
                raise
            await self._give(conn)
            return status, size
        raise ConnectionError("unreachable")


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, int]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    size, length, chunked = len(status_line), 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        size += len(line)
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
        elif name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    size += 2
    if chunked:
        while True:
            header = await reader.readline()
            chunk = int(header.split(b";")[0], 16)
            await reader.readexactly(chunk + 2)
            size += len(header) + chunk + 2
            if chunk == 0:
                break
    elif length:
        await reader.readexactly(length)
        size += length
    return int(status_line.split()[1]), size


class Page:
    """One Administration page: console.js's schedule/refresh and live.js's sequence rules."""

    def __init__(self, kind: str, pool: HttpPool, errors: dict[str, Any]) -> None:
        self.kind = kind
        self.path = FRAGMENTS[kind]
        self.pool = pool
        self.errors = errors
        self.timer: asyncio.TimerHandle | None = None
        self.ticket = 0
        self.snapshot_seq: int | None = None
        self.last_seq: int | None = None
        self.swaps: list[tuple[float, float]] = []
        self.fetches: list[float] = []  # start of every fetch
        self.answers: list[tuple[float, int]] = []  # (complete, bytes) of every answer
        self.bytes_by_second: dict[str, dict[int, int]] = {"http": {}, "ws": {}}
        self.tasks: set[asyncio.Task] = set()

    def count_bytes(self, at: float, size: int, channel: str) -> None:
        seconds = self.bytes_by_second[channel]
        seconds[int(at)] = seconds.get(int(at), 0) + size

    def schedule(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(DEBOUNCE_S, self._start_refresh)

    def _start_refresh(self) -> None:
        task = asyncio.create_task(self.refresh())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def refresh(self) -> None:
        self.ticket += 1
        mine = self.ticket
        started = time.monotonic()
        self.fetches.append(started)
        try:
            status, size = await self.pool.get(self.path)
        except Exception as exc:  # noqa: BLE001 (counted: the next event or resync retries, as the page does)
            self.error(exc)
            return
        done = time.monotonic()
        self.count_bytes(done, size, "http")
        self.answers.append((done, size))
        if status != 200:
            self.error(RuntimeError(f"GET {self.path}: {status}"))
        elif mine == self.ticket:
            self.swaps.append((started, done))

    def error(self, exc: BaseException) -> None:
        self.errors["errors"] += 1
        if len(self.errors["error_samples"]) < 20:
            self.errors["error_samples"].append(f"{self.kind}: {exc!r}"[:200])

    def on_message(self, raw: str | bytes, at: float) -> None:
        self.count_bytes(at, len(raw), "ws")
        try:
            message = json.loads(raw)
        except ValueError:
            return
        if message.get("type") == "heartbeat":
            return
        if message.get("type") == "snapshot":
            self.snapshot_seq = self.last_seq = message.get("seq")
            self.schedule()
            return
        seq = message.get("seq")
        if self.snapshot_seq is None or not isinstance(seq, int) or seq <= (self.last_seq or 0):
            return
        self.last_seq = seq
        self.schedule()

    def result(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "swaps": self.swaps,
            "fetches": self.fetches,
            "bytes": self.bytes_by_second,
            "answers": self.answers,
        }


async def run_page(page: Page, url: str, headers: dict[str, str], ready: asyncio.Queue, stop: asyncio.Event) -> None:
    try:
        async with connect(url, additional_headers=headers, max_size=None, open_timeout=60) as ws:
            first = await ws.recv()
            page.on_message(first, time.monotonic())
            if page.snapshot_seq is None:
                raise RuntimeError(f"no snapshot first: {str(first)[:100]}")
            await ready.put(True)
            resync = asyncio.create_task(_resync(page))
            stopper = asyncio.create_task(stop.wait())
            while True:
                receiving = asyncio.create_task(ws.recv())
                done, _ = await asyncio.wait({receiving, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if stopper in done:
                    receiving.cancel()
                    resync.cancel()
                    return
                page.on_message(receiving.result(), time.monotonic())
    except Exception as exc:  # noqa: BLE001 (counted and reported)
        page.error(exc)
        await ready.put(False)


async def _resync(page: Page) -> None:
    await asyncio.sleep(random.uniform(0, RESYNC_S))  # noqa: S311 (a phase, not a secret)
    while True:
        page.schedule()
        await asyncio.sleep(RESYNC_S)


async def main_async(args: argparse.Namespace) -> None:
    url = f"ws://127.0.0.1:{args.port}/ws/status/"
    headers = {"Cookie": args.cookie, "Origin": f"http://127.0.0.1:{args.port}"}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGUSR1, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    errors: dict[str, Any] = {"errors": 0, "error_samples": []}
    kinds = [kind for kind in args.pages.split(",") if kind]
    pages = [Page(kind, HttpPool(args.port, args.cookie), errors) for kind in kinds]
    ready: asyncio.Queue = asyncio.Queue()
    tasks = [asyncio.create_task(run_page(page, url, headers, ready, stop)) for page in pages]
    for _ in pages:
        await ready.get()
    print("ready", flush=True)
    await stop.wait()
    await asyncio.gather(*tasks, return_exceptions=True)
    out = {"pages": [page.result() for page in pages], **errors}
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(args.out)  # whole or absent: the benchmark waits for the file


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cookie", required=True)
    parser.add_argument("--pages", required=True, help="comma-separated: overview or sessions, one per page")
    parser.add_argument("--out", required=True)
    asyncio.run(main_async(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
