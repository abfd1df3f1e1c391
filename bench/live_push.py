"""Live push (issue 7, point 5): 200 administrators' WebSockets, changes at a steady rate.

A web node (uvicorn, the project's ASGI app, pub/sub channel layer on the run's Redis)
serves ``/ws/status/``; a separate process (``bench/_ws_clients.py``) holds ``--clients``
real WebSocket connections logged in as an administrator. This process commits changes at
a steady rate, for each of ``--rates`` (1, 2, 5 and 10 a second by default, i.e. 200 to
2,000 deliveries a second) in turn: each change is a transaction that updates a row and calls
``common.live.publish`` (the path of every service), with an ``on_commit`` hook
registered first that stamps ``time.monotonic()`` into the event, so the stamp is the
moment of the commit. Each client's latency = its receipt time - that stamp (one
monotonic clock for the machine). Reported per rate: p50 / p99 / max over every
delivery, deliveries still missing 5 s after the last change, the node's CPU, and the
connect time of the 200 sockets. Target: p99 ≤ 100 ms. The node uses the environment's
``DB_CONN_MAX_AGE`` (0, the default, unless set).

Run: ``.venv/bin/python -m bench.live_push [--quick] [--clients N] [--rates 1,2,5] [--seconds S]``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench._common import format_table, loadavg_1m, summarize, write_results
from bench._stack import PYTHON, Child, PySpy, django_stack, staff_cookie, wait_until

TARGET_P99_MS = 100.0
GRACE_SECONDS = 5.0


def _send(server: Any, phase: int, rate: float, seconds: float) -> int:
    """Commit ``rate`` changes a second for ``seconds``; returns how many."""
    from django.db import transaction

    from common import live
    from failover.models import Server

    sent = 0
    started = time.monotonic()
    period = 1.0 / rate
    while (now := time.monotonic()) < started + seconds:
        due = started + sent * period
        if now < due:
            time.sleep(due - now)
        data: dict[str, Any] = {"phase": phase, "n": sent, "server": server.name}
        with transaction.atomic():
            Server.objects.filter(pk=server.pk).update(description=f"bench change {phase}-{sent}")
            # Registered before publish's own hook, so it runs first: the stamp is the commit.
            transaction.on_commit(lambda data=data: data.__setitem__("t", time.monotonic()))
            live.publish("bench.change", data)
        sent += 1
    return sent


def run(clients: int, rates: list[float], seconds: float, profile: bool = False) -> list[dict[str, Any]]:
    with django_stack("live") as stack:
        from failover.services.topology import server_ensure

        server = server_ensure(name="bench-a")
        node = stack.node(monitor=True)
        out = stack.run_dir / "clients.json"
        holder = stack.track(
            Child(
                "ws-clients",
                [PYTHON, "-m", "bench._ws_clients", "--port", str(node.port), "--clients", str(clients)]
                + ["--cookie", staff_cookie(), "--out", str(out)],
                stack.peer_env(),
                stack.run_dir / "clients.log",
                stdout_pipe=True,
            ).start()
        )
        holder.read_line(120)
        phases = []
        for phase, rate in enumerate(rates):
            time.sleep(1.0)
            loads = [loadavg_1m()]
            name = f"live_push-node-{rate:g}"
            profiler = PySpy(node.child.pid, seconds, name) if profile and phase == len(rates) - 1 else None
            cpu0, started = node.child.cpu_seconds(), time.monotonic()
            sent = _send(server, phase, rate, seconds)
            cpu = (node.child.cpu_seconds() - cpu0) / (time.monotonic() - started) * 100
            loads.append(loadavg_1m())
            if profiler is not None:
                profiler.finish()
            time.sleep(GRACE_SECONDS)  # the last deliveries
            phases.append({"rate_per_s": rate, "changes": sent, "node_cpu_pct": round(cpu, 1), "load_1m": loads})
        holder.signal(signal.SIGUSR1)
        wait_until(out.exists, 30, "clients' results")
        result = json.loads(out.read_text())
        database = stack.database_kind
    rows = []
    for phase, info in enumerate(phases):
        latencies_ms = [x * 1000 for x in result["latencies"].get(str(phase), [])]
        expected = info["changes"] * clients
        rows.append(
            {
                "clients": clients,
                "seconds": seconds,
                **info,
                "deliveries": len(latencies_ms),
                "expected": expected,
                "undelivered": expected - len(latencies_ms),
                "errors": result["errors"],
                "error_samples": result["error_samples"][:5],
                "connect_all_s": result["connect_s"],
                "latency_ms": summarize(latencies_ms, digits=2),
                "database": database,
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    headers = ["clients", "changes/s", "deliveries/s", "delivered", "undelivered", "p50 ms", "p99 ms", "max ms"]
    headers += ["node CPU %", "connect s"]
    out = []
    for r in rows:
        lat = r["latency_ms"]
        out.append(
            [
                r["clients"],
                r["rate_per_s"],
                round(r["rate_per_s"] * r["clients"]),
                r["deliveries"],
                r["undelivered"],
                lat["p50"],
                lat["p99"],
                lat["max"],
                r["node_cpu_pct"],
                r["connect_all_s"],
            ]
        )
    return format_table(headers, out)


def figures(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        lat = r["latency_ms"]
        out.append(
            {
                "benchmark": "live_push",
                "figure": f"{r['clients']} sockets, {r['rate_per_s']:g} changes/s "
                f"({r['rate_per_s'] * r['clients']:.0f} deliveries/s): commit → receipt",
                "value": f"p50 {lat['p50']} ms · p99 {lat['p99']} ms ({r['undelivered']} undelivered)",
                "target": f"p99 ≤ {TARGET_P99_MS:.0f} ms",
                "met": lat["p99"] is not None and lat["p99"] <= TARGET_P99_MS and r["undelivered"] == 0,
            }
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s of changes")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rates", default=None, help="changes per second, comma-separated (default 1,2,5,10)")
    parser.add_argument("--seconds", type=float, default=None, help="per rate; default 15 (5 with --quick)")
    parser.add_argument("--profile", action="store_true", help="py-spy the node while changes are sent")
    parser.add_argument("--output", default="live_push")
    args = parser.parse_args(argv)
    seconds = args.seconds or (5.0 if args.quick else 15.0)
    rates = [float(x) for x in (args.rates or ("2" if args.quick else "1,2,5,10")).split(",")]
    started = time.monotonic()
    result = run(args.clients, rates, seconds, args.profile)
    print(table(result), flush=True)
    data = {
        "benchmark": "live_push",
        "duration_s": round(time.monotonic() - started, 1),
        "rows": result,
        "figures": figures(result),
    }
    print(f"\nwritten: {write_results(args.output, data)}", file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
