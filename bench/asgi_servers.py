"""Which ASGI server serves our application best: uvicorn, daphne, granian, hypercorn.

For each server, one worker process is started as a real subprocess on a free port,
serving :mod:`bench.echo_asgi` (the project's Django HTTP app plus a WebSocket echo
consumer); once ``/healthz`` answers, two loads run one after the other:

* HTTP: ``GET /healthz`` at a fixed concurrency with keep-alive, after a short warm-up,
  driven by ``wrk`` (C, one thread) when it is on PATH, else by a Python client;
  requests/s, p50/p99 latency, socket errors and non-200 answers.
* WebSocket: N clients connect at once to ``/ws/echo/`` (connect time p50/p99), then
  each sends a ~1 KB JSON text frame at a steady rate with a random phase; every echo's
  round-trip time is recorded; frames not echoed and connections closed early are errors.

Run: ``/tmp/v/bin/python -m bench.asgi_servers`` (``--help`` for the knobs). Prints a
table and writes ``bench/results/asgi_servers.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench._common import (
    BENCH_VAR_DIR,
    DEFAULT_REDIS_URL,
    BenchError,
    django_env,
    format_table,
    free_port,
    install_sigterm_handler,
    loadavg_1m,
    machine_info,
    managed_process,
    package_version,
    process_group_rss_mb,
    summarize,
    wait_for_http,
    write_results,
)

APP = "bench.echo_asgi:application"
WS_PATH = "/ws/echo/"


@dataclass(frozen=True)
class Server:
    """How to start one ASGI server with a single worker process."""

    name: str
    distribution: str
    argv: Callable[[int], list[str]]
    notes: str


def _python_module(module: str, *args: str) -> list[str]:
    """``python -m module args...`` with this interpreter, so the virtualenv's server runs."""
    return [sys.executable, "-m", module, *args]


SERVERS: tuple[Server, ...] = (
    Server(
        "uvicorn",
        "uvicorn",
        lambda port: _python_module(
            "uvicorn",
            *("--host", "127.0.0.1", "--port", str(port)),
            *("--loop", "uvloop", "--http", "httptools", "--lifespan", "off"),
            *("--no-access-log", "--log-level", "warning"),
            APP,
        ),
        "uvloop + httptools, --ws auto (picks websockets-sansio), single process",
    ),
    Server(
        "daphne",
        "daphne",
        lambda port: _python_module("daphne", "-b", "127.0.0.1", "-p", str(port), "-v", "0", APP),
        "Twisted asyncio reactor, -v 0 (no access log)",
    ),
    Server(
        "granian",
        "granian",
        lambda port: _python_module(
            "granian",
            *("--interface", "asgi", "--host", "127.0.0.1", "--port", str(port)),
            *("--workers", "1", "--loop", "uvloop", "--no-access-log", "--log-level", "warning"),
            APP,
        ),
        "--interface asgi, 1 worker, uvloop (Rust HTTP/WS stack)",
    ),
    Server(
        "hypercorn",
        "hypercorn",
        lambda port: _python_module(
            "hypercorn", "-b", f"127.0.0.1:{port}", "-w", "1", "-k", "uvloop", "--log-level", "warning", APP
        ),
        "-k uvloop, 1 worker (h11 + wsproto)",
    ),
)


# --- HTTP load -------------------------------------------------------------------------

_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _wrk_ms(text: str) -> float:
    """A wrk latency such as ``812.00us`` or ``1.20s``, in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise BenchError(f"Unexpected wrk latency {text!r}")
    return float(match.group(1)) * _WRK_UNITS[match.group(2)]


def parse_wrk(output: str) -> dict[str, Any]:
    """The figures of one ``wrk --latency`` run."""
    latency = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", output, re.MULTILINE))
    requests = re.search(r"(\d+) requests in", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not (requests and rps and "50" in latency and "99" in latency):
        raise BenchError(f"Could not parse wrk output:\n{output}")
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    return {
        "client": "wrk",
        "requests": int(requests.group(1)),
        "rps": round(float(rps.group(1)), 1),
        "p50_ms": round(_wrk_ms(latency["50"]), 3),
        "p99_ms": round(_wrk_ms(latency["99"]), 3),
        "errors": errors + (int(non_2xx.group(1)) if non_2xx else 0),
        "socket_errors": socket_errors.group(0) if socket_errors else "none",
    }


def run_wrk(port: int, concurrency: int, duration: float) -> dict[str, Any]:
    """GET /healthz with ``wrk`` (one thread: the other core is the server's)."""
    seconds = max(1, round(duration))
    argv = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    completed = subprocess.run(
        [*argv, f"http://127.0.0.1:{port}/healthz"], capture_output=True, text=True, timeout=seconds + 30, check=True
    )
    return parse_wrk(completed.stdout)


async def _python_http_worker(port: int, stop_at: float, latencies: list[float], errors: list[str]) -> None:
    """One keep-alive connection sending GET /healthz back to back until ``stop_at``."""
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            writer.write(request)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if not status.startswith(b"HTTP/1.1 200"):
                errors.append(status.decode(errors="replace").strip())
            latencies.append((time.perf_counter() - started) * 1000)
    except (OSError, asyncio.IncompleteReadError) as exc:
        errors.append(repr(exc))
    finally:
        writer.close()


async def run_python_http(port: int, concurrency: int, duration: float) -> dict[str, Any]:
    """Fallback when wrk is missing: keep-alive GETs from asyncio (the client may be the bottleneck)."""
    latencies: list[float] = []
    errors: list[str] = []
    started = time.monotonic()
    await asyncio.gather(
        *(_python_http_worker(port, started + duration, latencies, errors) for _ in range(concurrency))
    )
    elapsed = time.monotonic() - started
    stats = summarize(latencies)
    return {
        "client": "python",
        "requests": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": stats["p50"],
        "p99_ms": stats["p99"],
        "errors": len(errors),
        "socket_errors": errors[:5],
    }


def measure_http(port: int, concurrency: int, duration: float, warmup: float) -> dict[str, Any]:
    """Warm up, then measure; wrk if available."""
    if shutil.which("wrk"):
        run_wrk(port, concurrency, warmup)
        return run_wrk(port, concurrency, duration)
    asyncio.run(run_python_http(port, concurrency, warmup))
    return asyncio.run(run_python_http(port, concurrency, duration))


# --- WebSocket load ---------------------------------------------------------------------


@dataclass
class WsStats:
    """What the WebSocket clients observed, all clients together."""

    connect_ms: list[float] = field(default_factory=list)
    rtt_ms: list[float] = field(default_factory=list)
    sent: int = 0
    echoed: int = 0
    connect_errors: list[str] = field(default_factory=list)
    closed_early: list[str] = field(default_factory=list)
    bad_echoes: int = 0


def _payload(client: int, seq: int, filler: str) -> str:
    """A JSON frame carrying its own send time, so the reader needs no bookkeeping per frame."""
    return json.dumps({"client": client, "seq": seq, "t": time.perf_counter_ns(), "event": filler})


async def _reader(ws: ClientConnection, stats: WsStats, expected_client: int) -> None:
    """Record the round trip of every echo until the connection closes."""
    async for frame in ws:
        now = time.perf_counter_ns()
        try:
            data = json.loads(frame)
        except (TypeError, ValueError):
            stats.bad_echoes += 1
            continue
        if data.get("client") != expected_client:
            stats.bad_echoes += 1
            continue
        stats.echoed += 1
        stats.rtt_ms.append((now - data["t"]) / 1e6)


async def _ws_client(
    index: int,
    url: str,
    stats: WsStats,
    all_connected: asyncio.Event,
    rate: float,
    duration: float,
    grace: float,
    filler: str,
    compression: str | None,
) -> None:
    """One client: connect, wait for the others, send at a steady rate, collect echoes, close."""
    started = time.perf_counter()
    try:
        ws = await connect(url, compression=compression, open_timeout=15, ping_interval=None, max_size=2**20)
    except Exception as exc:  # any handshake failure counts, whatever its type
        stats.connect_errors.append(f"{type(exc).__name__}: {exc}")
        return
    stats.connect_ms.append((time.perf_counter() - started) * 1000)
    reader = asyncio.create_task(_reader(ws, stats, index))
    closed_early: str | None = None
    try:
        await all_connected.wait()
        interval = 1.0 / rate
        first = time.monotonic() + random.uniform(0, interval)
        seq = 0
        while (due := first + seq * interval) < first + duration:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await ws.send(_payload(index, seq, filler))
            stats.sent += 1
            seq += 1
        # Let the last echoes arrive, then close politely.
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not reader.done():
            await asyncio.sleep(0.05)
            if stats.echoed >= stats.sent:
                break
        await ws.close()
    except ConnectionClosed as exc:
        closed_early = f"{type(exc).__name__}: {exc}"
    finally:
        reader.cancel()
        outcome = (await asyncio.gather(reader, return_exceptions=True))[0]
        if closed_early is None and isinstance(outcome, ConnectionClosed):
            closed_early = f"{type(outcome).__name__}: {outcome}"
        if closed_early is not None:
            stats.closed_early.append(closed_early)


async def measure_ws(
    port: int, clients: int, rate: float, duration: float, grace: float, payload_bytes: int, compression: str | None
) -> dict[str, Any]:
    """Connect ``clients`` at once, then echo at ``rate`` frames/s each for ``duration`` s."""
    stats = WsStats()
    all_connected = asyncio.Event()
    filler = "x" * max(0, payload_bytes - 80)
    url = f"ws://127.0.0.1:{port}{WS_PATH}"
    tasks = [
        asyncio.create_task(_ws_client(i, url, stats, all_connected, rate, duration, grace, filler, compression))
        for i in range(clients)
    ]
    connect_started = time.monotonic()
    while len(stats.connect_ms) + len(stats.connect_errors) < clients and time.monotonic() - connect_started < 30:
        await asyncio.sleep(0.01)
    connect_wall = time.monotonic() - connect_started
    all_connected.set()
    await asyncio.gather(*tasks)
    connect = summarize(stats.connect_ms)
    rtt = summarize(stats.rtt_ms)
    lost = stats.sent - stats.echoed
    return {
        "clients": clients,
        "connected": len(stats.connect_ms),
        "connect_all_s": round(connect_wall, 3),
        "connect_p50_ms": connect["p50"],
        "connect_p99_ms": connect["p99"],
        "sent": stats.sent,
        "echoed": stats.echoed,
        "rtt_p50_ms": rtt["p50"],
        "rtt_p99_ms": rtt["p99"],
        "rtt_max_ms": rtt["max"],
        "errors": len(stats.connect_errors) + len(stats.closed_early) + stats.bad_echoes + max(0, lost),
        "connect_errors": stats.connect_errors[:5],
        "closed_early": stats.closed_early[:5],
        "not_echoed": lost,
        "bad_echoes": stats.bad_echoes,
    }


def _ws_run(coro_args: dict[str, Any]) -> dict[str, Any]:
    """Run :func:`measure_ws` on uvloop (a cheaper client leaves more CPU to the server)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the virtualenv
        return asyncio.run(measure_ws(**coro_args))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(measure_ws(**coro_args))


# --- Driver ---------------------------------------------------------------------------


def bench_server(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    """Start ``server``, run both loads, stop it; the figures of one run."""
    port = free_port()
    log_path = BENCH_VAR_DIR / f"asgi-{server.name}.log"
    result: dict[str, Any] = {
        "server": server.name,
        "version": package_version(server.distribution),
        "notes": server.notes,
        "argv": server.argv(port)[1:],
        "loadavg_1m_before": loadavg_1m(),
    }
    # A prefix of its own keeps the consumers' channel-layer keys apart from anyone else's.
    env = django_env(args.redis_url, CHANNEL_LAYER_PREFIX=f"bench-asgi-{uuid.uuid4().hex[:8]}")
    with managed_process(server.argv(port), env=env, log_path=log_path) as proc:
        result["startup_s"] = round(wait_for_http(proc, port, timeout=30, log_path=log_path), 2)
        result["http"] = measure_http(port, args.concurrency, args.http_duration, args.warmup)
        result["ws"] = _ws_run(
            {
                "port": port,
                "clients": args.ws_clients,
                "rate": args.ws_rate,
                "duration": args.ws_duration,
                "grace": 3.0,
                "payload_bytes": args.payload_bytes,
                "compression": "deflate" if args.ws_deflate else None,
            }
        )
        result["rss_mb"] = process_group_rss_mb(proc.pid)
        result["alive_after"] = proc.poll() is None
    return result


def table(results: Sequence[dict[str, Any]]) -> str:
    """The summary table printed and copied into docs/performance.md."""
    headers = [
        "server",
        "version",
        "req/s",
        "p50 ms",
        "p99 ms",
        "ws connect p50/p99 ms",
        "ws rtt p50 ms",
        "ws rtt p99 ms",
        "RSS MiB",
        "errors (http/ws)",
    ]
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["server"], r["version"], *["-"] * 7, r["error"][:40]])
            continue
        http, ws = r["http"], r["ws"]
        rows.append(
            [
                r["server"],
                r["version"],
                http["rps"],
                http["p50_ms"],
                http["p99_ms"],
                f"{ws['connect_p50_ms']:.1f}/{ws['connect_p99_ms']:.1f}" if ws["connected"] else "-",
                ws["rtt_p50_ms"],
                ws["rtt_p99_ms"],
                r["rss_mb"],
                f"{http['errors']}/{ws['errors']}",
            ]
        )
    return format_table(headers, rows)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line knobs; the defaults keep one run near 1.5 minutes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default=",".join(s.name for s in SERVERS), help="comma-separated subset")
    parser.add_argument("--concurrency", type=int, default=32, help="HTTP connections (default 32)")
    parser.add_argument("--http-duration", type=float, default=10.0, help="HTTP seconds measured (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="HTTP warm-up seconds (default 2)")
    parser.add_argument("--ws-clients", type=int, default=200, help="WebSocket clients (default 200)")
    parser.add_argument("--ws-rate", type=float, default=5.0, help="frames/s per client (default 5)")
    parser.add_argument("--ws-duration", type=float, default=8.0, help="WebSocket seconds measured (default 8)")
    parser.add_argument("--payload-bytes", type=int, default=1024, help="WebSocket frame size (default 1024)")
    parser.add_argument("--ws-deflate", action="store_true", help="offer permessage-deflate like a browser")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="Redis of the servers' channel layer")
    parser.add_argument("--output", default="asgi_servers", help="results file name under bench/results/")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Benchmark each selected server in turn; print the table; write the JSON."""
    args = parse_args(argv)
    install_sigterm_handler()
    BENCH_VAR_DIR.mkdir(parents=True, exist_ok=True)
    wanted = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = set(wanted) - {s.name for s in SERVERS}
    if unknown:
        raise SystemExit(f"Unknown servers: {', '.join(sorted(unknown))}")
    results = []
    started = time.monotonic()
    for server in (s for s in SERVERS if s.name in wanted):
        print(f"--- {server.name} {package_version(server.distribution)}", file=sys.stderr, flush=True)
        try:
            results.append(bench_server(server, args))
        except (BenchError, subprocess.SubprocessError, OSError) as exc:
            results.append({"server": server.name, "version": package_version(server.distribution), "error": str(exc)})
            print(f"    failed: {exc}", file=sys.stderr)
    data = {
        "benchmark": "asgi_servers",
        "machine": machine_info({"channel_layer": args.redis_url}),
        "parameters": {k: v for k, v in vars(args).items() if k not in {"servers", "output"}},
        "http_client": "wrk" if shutil.which("wrk") else "python",
        "duration_s": round(time.monotonic() - started, 1),
        "results": results,
    }
    print(table(results))
    print(f"\nwritten: {write_results(args.output, data)} ({data['duration_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
