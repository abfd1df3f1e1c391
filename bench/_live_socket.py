"""One emulated page's live socket, as ``static/js/live.js`` keeps it: the snapshot first,
then every message to the page, a resync every 30 s (random phase: pages are opened at
different moments), until told to stop (``bench/_desktop_clients.py``,
``bench/_agent_clients.py``)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

from websockets.asyncio.client import ClientConnection, connect

RESYNC_S = 30.0  # live.js resyncMs


class LivePage(Protocol):
    snapshot_seq: int | None
    socket: ClientConnection | None

    def on_message(self, raw: str | bytes, at: float) -> None: ...

    def error(self, exc: BaseException) -> None: ...


async def received_until(ws: ClientConnection, stop: asyncio.Event) -> AsyncIterator[tuple[str | bytes, float]]:
    """Each message of ``ws`` with its receipt time (``time.monotonic()``), until ``stop`` is set."""
    stopper = asyncio.create_task(stop.wait())
    try:
        while True:
            receiving = asyncio.create_task(ws.recv())
            done, _ = await asyncio.wait({receiving, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                receiving.cancel()
                return
            yield receiving.result(), time.monotonic()
    finally:
        stopper.cancel()


async def follow(
    page: LivePage,
    url: str,
    headers: dict[str, str],
    ready: asyncio.Queue,
    stop: asyncio.Event,
    *,
    resync: Callable[[], None],
    open_timeout: float = 60,
) -> None:
    """Keep ``page``'s socket until ``stop``; puts True in ``ready`` once the snapshot came
    (False if it failed: counted by the page)."""
    try:
        wire = getattr(page, "count_wire", None)
        counting = counting_connection(wire) if wire is not None else None
        async with connect(
            url, additional_headers=headers, max_size=None, open_timeout=open_timeout, create_connection=counting
        ) as ws:
            page.socket = ws  # what the page sends (a console page: the render it shows)
            first = await ws.recv()
            page.on_message(first, time.monotonic())
            if page.snapshot_seq is None:
                raise RuntimeError(f"no snapshot first: {str(first)[:100]}")
            await ready.put(True)
            resyncing = asyncio.create_task(_resync(resync))
            try:
                async for raw, at in received_until(ws, stop):
                    page.on_message(raw, at)
            finally:
                resyncing.cancel()
    except Exception as exc:  # noqa: BLE001 (counted and reported)
        page.error(exc)
        await ready.put(False)


def counting_connection(count: Callable[[int], None]) -> type[ClientConnection]:
    """A connection that tells ``count`` the size of every chunk of bytes it receives: what
    the socket carried on the wire (compressed by per-message deflate), not the messages'
    decoded size."""

    class Counting(ClientConnection):
        def data_received(self, data: bytes) -> None:
            count(len(data))
            super().data_received(data)

    return Counting


async def _resync(resync: Callable[[], None]) -> None:
    await asyncio.sleep(random.uniform(0, RESYNC_S))  # noqa: S311 (a phase, not a secret)
    while True:
        resync()
        await asyncio.sleep(RESYNC_S)


async def report_when_stopped(
    tasks: list[asyncio.Task], ready: asyncio.Queue, stop: asyncio.Event, out: str, result: Callable[[], dict]
) -> None:
    """Print ``ready`` once every page has its snapshot; on ``stop``, let the pages close and
    write ``result()`` to ``out``, whole or absent (the benchmark waits for the file)."""
    for _ in tasks:
        await ready.get()
    print("ready", flush=True)
    await stop.wait()
    await asyncio.gather(*tasks, return_exceptions=True)
    tmp = Path(out).with_suffix(".tmp")
    tmp.write_text(json.dumps(result()))
    tmp.replace(out)
