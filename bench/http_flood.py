"""Flood a web node with HTTP requests, more than it can serve, for a given time.

``python -m bench.http_flood --port 8000 --connections 64 --seconds 60 [--token T]``

Each connection sends its next request as soon as the previous answer arrived (HTTP/1.1
keep-alive, a new connection when the node closes one), cycling through ``--paths``: by
default the status snapshot (authenticated, the heaviest read) and the log-in page. With
more connections than the node has HTTP threads, requests always wait for a thread: the
node is saturated for the whole run. Run one flood per core to load every core.

Prints one JSON line at the end: requests answered, by status, errors, latency percentiles.
Used by tests/failover/test_saturated_node.py, the fault suite's "saturate a node" fault
and bench/saturated_node.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from collections import Counter

DEFAULT_PATHS = ("/api/v1/status/", "/login/")


class Flood:
    def __init__(self, host: str, port: int, paths: list[str], token: str) -> None:
        self.host, self.port, self.paths, self.token = host, port, paths, token
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.latencies: list[float] = []

    def request(self, n: int) -> bytes:
        path = self.paths[n % len(self.paths)]
        auth = f"Authorization: Token {self.token}\r\n" if self.token and path.startswith("/api/") else ""
        return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode()

    async def connection(self, number: int, deadline: float) -> None:
        n = number
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError as exc:
                self.errors[type(exc).__name__] += 1
                await asyncio.sleep(0.05)
                continue
            try:
                while time.monotonic() < deadline:
                    started = time.perf_counter()
                    writer.write(self.request(n))
                    status, keep_alive = await read_response(reader)
                    self.latencies.append(time.perf_counter() - started)
                    self.statuses[status] += 1
                    n += 1
                    if not keep_alive:
                        break
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                self.errors[type(exc).__name__] += 1
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    def summary(self, seconds: float) -> dict:
        ordered = sorted(self.latencies)

        def pct(p: float) -> float | None:
            return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 1) if ordered else None

        answered = sum(self.statuses.values())
        return {
            "answered": answered,
            "per_second": round(answered / seconds, 1),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": dict(self.errors),
            "p50_ms": pct(50),
            "p99_ms": pct(99),
            "max_ms": round(ordered[-1] * 1000, 1) if ordered else None,
        }


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; (status, whether the connection stays open)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    length = int(headers.get("content-length", "0"))
    if length:
        await reader.readexactly(length)
    return status, headers.get("connection", "").lower() != "close"


async def main(args: argparse.Namespace) -> dict:
    flood = Flood(args.host, args.port, args.paths.split(","), args.token)
    started = time.monotonic()
    deadline = started + args.seconds
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tasks = [asyncio.create_task(flood.connection(n, deadline)) for n in range(args.connections)]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=args.seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return flood.summary(time.monotonic() - started)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--token", default="", help="API token for the /api/ paths")
    parser.add_argument("--paths", default=",".join(DEFAULT_PATHS))
    return parser.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(parse_args()))), flush=True)
