"""Many administrators' ``/ws/status/`` sockets in one process (``bench.live_push``).

``python -m bench._ws_clients --port P --cookie C --clients N --out FILE`` opens ``N`` real
WebSocket connections (the ``websockets`` client, logged in by session cookie), each
reading its snapshot first, prints ``ready`` once all are open, and keeps, per client,
the latency of every ``bench.change`` event: receipt ``time.monotonic()`` minus the
``t`` the publisher stamped when its transaction committed (one clock for the machine),
grouped by the event's ``phase``. On SIGUSR1 (or SIGTERM) it writes
``{"latencies": {phase: [...]}, "received": n, "errors": n}``
to ``FILE`` and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from websockets.asyncio.client import connect

from bench._live_socket import received_until


async def client(url: str, headers: dict[str, str], ready: asyncio.Queue, stop: asyncio.Event, out: dict) -> None:
    try:
        async with connect(url, additional_headers=headers, max_size=None, open_timeout=30) as ws:
            first = json.loads(await ws.recv())
            if first.get("type") != "snapshot":
                raise RuntimeError(first)
            await ready.put(True)
            async for raw, at in received_until(ws, stop):
                message = json.loads(raw)
                if message.get("type") == "bench.change":
                    data = message["data"]
                    out["latencies"].setdefault(str(data.get("phase", 0)), []).append(at - data["t"])
                    out["received"] += 1
    except Exception as exc:  # noqa: BLE001 (counted and reported)
        out["errors"] += 1
        out["error_samples"].append(repr(exc)[:200])
        await ready.put(False)


async def main_async(args: argparse.Namespace) -> None:
    url = f"ws://127.0.0.1:{args.port}/ws/status/"
    headers = {"Cookie": args.cookie, "Origin": f"http://127.0.0.1:{args.port}"}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGUSR1, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    ready: asyncio.Queue = asyncio.Queue()
    out = {"latencies": {}, "received": 0, "errors": 0, "error_samples": [], "connect_s": None}
    started = time.monotonic()
    tasks = [asyncio.create_task(client(url, headers, ready, stop, out)) for _ in range(args.clients)]
    for _ in range(args.clients):
        await ready.get()
    out["connect_s"] = round(time.monotonic() - started, 3)
    print("ready", flush=True)
    await stop.wait()
    await asyncio.gather(*tasks, return_exceptions=True)
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(args.out)  # whole or absent: the benchmark waits for the file


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cookie", required=True)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--out", required=True)
    asyncio.run(main_async(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
