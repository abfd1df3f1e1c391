"""Caller requests (issue 7, point 7): ``POST /api/v1/sessions/`` at a fixed concurrency.

A web node (uvicorn, one process, the project's ASGI app) with a Celery worker (each
request sends ``sessions.drain_queue`` on commit) and the run's Redis and database; one
routing server, up, with its Media Blender pair of real simulators (no agent is ready, so
every session stays queued: the director, the insert, the audit entry, the live event
and the drain task are the work of each request). The load comes from this process:
``--concurrency`` asyncio clients on keep-alive HTTP/1.1 connections, each sending the
next request as soon as the previous answer arrived, authenticated with an API token
(``Authorization: Token``, as a caller-facing integration would), for ``--seconds``
after a 2 s warm-up. Reported: requests/s, latency p50/p99/max, non-201 answers.
Target: ≥ 300 requests/s with p99 ≤ 100 ms.

Run: ``.venv/bin/python -m bench.caller_requests [--quick] [--concurrency N] [--seconds S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

from bench._common import format_table, loadavg_1m, summarize, write_results
from bench._stack import PySpy, django_stack, media_blender_pair

TARGET_RPS = 300.0
TARGET_P99_MS = 100.0


async def _client(port: int, token: str, stop_at: float, measure_from: float, out: dict[str, Any]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    try:
        while (now := time.monotonic()) < stop_at:
            n += 1
            body = json.dumps({"caller_name": f"Bench caller {id(out) % 1000}-{n}", "topic": "bench"}).encode()
            head = (
                "POST /api/v1/sessions/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Token {token}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            writer.write(head + body)
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            done = time.monotonic()
            status = int(status_line.split()[1]) if status_line else 0
            if now >= measure_from:
                out["latencies"].append((done - now) * 1000)
                out["statuses"][status] = out["statuses"].get(status, 0) + 1
                if status != 201:
                    out["errors"] += 1
    finally:
        writer.close()


async def _load(port: int, token: str, concurrency: int, seconds: float, warmup: float) -> dict[str, Any]:
    out: dict[str, Any] = {"latencies": [], "statuses": {}, "errors": 0}
    start = time.monotonic()
    measure_from, stop_at = start + warmup, start + warmup + seconds
    await asyncio.gather(*(_client(port, token, stop_at, measure_from, out) for _ in range(concurrency)))
    out["seconds"] = seconds
    return out


def run(concurrency: int, seconds: float, profile: bool = False, workers: int = 1, **node_env: str) -> dict[str, Any]:
    with django_stack("callers") as stack:
        from django.contrib.auth import get_user_model
        from rest_framework.authtoken.models import Token

        media_blender_pair(stack)
        stack.worker()
        node = stack.node(monitor=True, workers=workers, **node_env)
        user = get_user_model().objects.create(username="bench-caller-integration", is_staff=True)
        token = Token.objects.create(user=user).key
        load = [loadavg_1m()]
        cpu0, t0 = node.child.cpu_seconds(), time.monotonic()
        profiler = PySpy(node.child.pid, seconds + 2, "caller_requests-node") if profile else None
        out = asyncio.run(_load(node.port, token, concurrency, seconds, warmup=2.0))
        if profiler is not None:
            profiler.finish()
        node_cpu = (node.child.cpu_seconds() - cpu0) / (time.monotonic() - t0) * 100
        load.append(loadavg_1m())
        database = stack.database_kind
    lat = out["latencies"]
    return {
        "concurrency": concurrency,
        "workers": workers,
        "seconds": seconds,
        "requests": len(lat),
        "rps": round(len(lat) / seconds, 1),
        "latency_ms": summarize(lat, digits=1),
        "errors": out["errors"],
        "statuses": {str(k): v for k, v in out["statuses"].items()},
        "node_cpu_pct": round(node_cpu, 1),
        "load_1m": load,
        "database": database,
    }


def table(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    headers = ["concurrency", "node processes", "database", "requests", "req/s", "p50 ms", "p99 ms", "max ms"]
    headers += ["non-201", "node CPU %"]
    row = [r["concurrency"], r.get("workers", 1), r["database"], r["requests"], r["rps"], lat["p50"], lat["p99"]]
    row += [lat["max"], r["errors"]]
    return format_table(headers, [[*row, r["node_cpu_pct"]]])


def figures(r: dict[str, Any]) -> list[dict[str, Any]]:
    lat = r["latency_ms"]
    met = r["rps"] >= TARGET_RPS and lat["p99"] is not None and lat["p99"] <= TARGET_P99_MS and r["errors"] == 0
    return [
        {
            "benchmark": "caller_requests",
            "figure": f"POST /api/v1/sessions/, concurrency {r['concurrency']}, one node of "
            f"{r.get('workers', 1)} process(es), {r['database']}",
            "value": f"{r['rps']} req/s · p50 {lat['p50']} ms · p99 {lat['p99']} ms · {r['errors']} errors",
            "target": f"≥ {TARGET_RPS:.0f} req/s, p99 ≤ {TARGET_P99_MS:.0f} ms",
            "met": met,
        }
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s of load")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds (default 20)")
    parser.add_argument("--profile", action="store_true", help="py-spy the node during the load")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes of the node")
    parser.add_argument("--output", default="caller_requests")
    args = parser.parse_args(argv)
    started = time.monotonic()
    result = run(args.concurrency, args.seconds or (5.0 if args.quick else 20.0), args.profile, args.workers)
    print(table(result))
    data = {
        "benchmark": "caller_requests",
        "duration_s": round(time.monotonic() - started, 1),
        "result": result,
        "figures": figures(result),
    }
    print(f"\nwritten: {write_results(args.output, data)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
