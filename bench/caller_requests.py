"""Caller requests (issue 7, point 7): ``POST /api/v1/sessions/`` at a fixed concurrency.

Web processes as production runs them (``DEBUG`` off, behind a TLS-terminating balancer:
the client sends ``X-Forwarded-Proto``): ``--nodes`` uvicorn processes of the project's ASGI
app for one routing server, each on its own port, the clients spread over them in turn as
a balancer would; a Celery worker, the run's Redis and database; the server up, with its
Media Blender pair of real simulators. No agent is ready, so every session stays queued:
the director's query, the insert, the audit entry, the live event and the "drain on its
way" mark are the work of each request. The load comes from this process: asyncio
clients on keep-alive HTTP/1.1 connections, each sending the next request as soon as the
previous answer arrived, authenticated with an API token (``Authorization: Token``, as a
caller-facing integration would), for ``--seconds`` after a 2 s warm-up, once per
``--concurrency``. Reported per concurrency: requests/s, latency p50/p99/max, non-201
answers, and where the machine's CPU went (web processes, worker, load client, machine).
Target, judged at the first concurrency (8): ≥ 300 requests/s with p99 ≤ 100 ms; the
second (16) shows the tail once the machine is saturated.

With ``--staffed`` the director has real choices to make: two routing servers (the second
without Media Blenders) with the same three skill groups, six agents each, ready but with
every slot taken (so still nothing is routed), and the callers name Sales, Support,
Billing or no skill group in turn: the director's availability ranking (skill group, free
agent, link) is evaluated over agents and their sessions on every request.

Run: ``.venv/bin/python -m bench.caller_requests [--quick] [--concurrency 8,16] [--nodes N] [--staffed]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

from bench._common import format_table, loadavg_1m, machine_cpu_seconds, summarize, write_results
from bench._stack import Child, Node, PySpy, django_stack, media_blender_pair

TARGET_RPS = 300.0
# The node runs as in production (DEBUG off: no query log, which on SQLite is one more query
# per query) behind a TLS-terminating load balancer: the client sends X-Forwarded-Proto.
PRODUCTION_ENV = {"DEBUG": "0", "SECRET_KEY": "bench-" + "x" * 50, "ALLOWED_HOSTS": "127.0.0.1"}
TARGET_P99_MS = 100.0
TARGET_TEXT = f"≥ {TARGET_RPS:.0f} req/s, p99 ≤ {TARGET_P99_MS:.0f} ms"


SKILL_GROUPS = (("5001", "Sales"), ("5002", "Support"), ("5003", "Billing"))


async def _client(
    port: int, token: str, stop_at: float, measure_from: float, out: dict[str, Any], groups: Sequence[str]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    try:
        while (now := time.monotonic()) < stop_at:
            n += 1
            request = {"caller_name": f"Bench caller {id(out) % 1000}-{n}", "topic": "bench"}
            if groups and (group := groups[n % len(groups)]):
                request["skill_group"] = group
            body = json.dumps(request).encode()
            head = (
                "POST /api/v1/sessions/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-Proto: https\r\n"
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


async def _load(
    ports: list[int], token: str, concurrency: int, seconds: float, warmup: float, groups: Sequence[str]
) -> dict[str, Any]:
    """``concurrency`` clients, spread over the nodes' ports in turn (as a balancer would)."""
    out: dict[str, Any] = {"latencies": [], "statuses": {}, "errors": 0}
    start = time.monotonic()
    measure_from, stop_at = start + warmup, start + warmup + seconds
    clients = [_client(ports[i % len(ports)], token, stop_at, measure_from, out, groups) for i in range(concurrency)]
    await asyncio.gather(*clients)
    out["seconds"] = seconds
    return out


def _staff(agents_per_server: int = 6, held: int = 2) -> None:
    """A second routing server, the shared skill groups on both, and agents ready with every
    slot taken (``held`` active sessions each), so the director weighs them on every request
    and nothing is routed (the load stays the caller path's alone)."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from failover.choices import Health
    from failover.models import Server
    from failover.services.topology import server_ensure
    from sessions.choices import AgentState, SessionState
    from sessions.models import Agent, CollaborationSession, SkillGroup

    server_ensure(name="bench-b")
    Server.objects.update(health=Health.UP)
    now = timezone.now()
    for server in Server.objects.all():
        groups = [SkillGroup.objects.create(server=server, icm_id=icm, name=name) for icm, name in SKILL_GROUPS]
        for n in range(agents_per_server):
            user = get_user_model().objects.create(username=f"{server.name}-agent-{n}")
            agent = Agent.objects.create(
                user=user, server=server, icm_id=f"{1000 + n}", state=AgentState.READY, max_sessions=held
            )
            own = [groups[n % len(groups)], groups[(n + 1) % len(groups)]]
            agent.skill_groups.set(own)
            CollaborationSession.objects.bulk_create(
                CollaborationSession(
                    server=server,
                    skill_group=own[0],
                    caller_name=f"Held {n}-{k}",
                    state=SessionState.ACTIVE,
                    agent=agent,
                    queued_at=now,
                    routed_at=now,
                    activated_at=now,
                )
                for k in range(held)
            )


def run(
    concurrencies: Sequence[int],
    seconds: float,
    profile: bool = False,
    workers: int = 1,
    nodes: int = 2,
    staffed: bool = False,
    **node_env: str,
) -> list[dict[str, Any]]:
    """One stack; one measured load per concurrency, one after the other."""
    rows = []
    with django_stack("callers") as stack:
        from django.contrib.auth import get_user_model

        from failover.services.api_tokens import token_create

        media_blender_pair(stack)
        if staffed:
            _staff()
        groups = [name for _, name in SKILL_GROUPS] + [""] if staffed else []
        worker = stack.worker()
        env = {**PRODUCTION_ENV, **node_env}
        web = [stack.node(monitor=True, workers=workers, **env) for _ in range(nodes)]
        user = get_user_model().objects.create(username="bench-caller-integration")  # a caller: any user
        _, token = token_create(user=user, name="bench", actor="system:bench")
        for concurrency in concurrencies:
            row = _measure(web, worker, token, concurrency, seconds, profile, groups)
            rows.append(
                {**row, "workers": workers, "nodes": nodes, "database": stack.database_kind, "staffed": staffed}
            )
    return rows


def _measure(
    web: list[Node], worker: Child, token: str, concurrency: int, seconds: float, profile: bool, groups: Sequence[str]
) -> dict:
    def web_cpu() -> float:
        return sum(node.child.cpu_seconds() for node in web)

    # Where the machine's cores go during the load: the target is bounded by them.
    load = [loadavg_1m()]
    cpu0 = (web_cpu(), worker.cpu_seconds(), time.process_time(), machine_cpu_seconds())
    t0 = time.monotonic()
    profiler = PySpy(web[0].child.pid, seconds + 2, f"caller_requests-{concurrency}-node") if profile else None
    out = asyncio.run(_load([node.port for node in web], token, concurrency, seconds, 2.0, groups))
    if profiler is not None:
        profiler.finish()
    cpu1 = (web_cpu(), worker.cpu_seconds(), time.process_time(), machine_cpu_seconds())
    elapsed = time.monotonic() - t0
    node_cpu, worker_cpu, client_cpu, machine_cpu = ((b - a) / elapsed * 100 for a, b in zip(cpu0, cpu1, strict=True))
    load.append(loadavg_1m())
    lat = out["latencies"]
    rps = len(lat) / seconds
    return {
        "concurrency": concurrency,
        "seconds": seconds,
        "requests": len(lat),
        "rps": round(rps, 1),
        "latency_ms": summarize(lat, digits=1),
        "errors": out["errors"],
        "statuses": {str(k): v for k, v in out["statuses"].items()},
        # CPU in % of one core over the load; per request, what one caller's request costs
        # the web processes.
        "node_cpu_pct": round(node_cpu, 1),
        "node_cpu_ms_per_request": round(node_cpu * 10 / rps, 2) if lat else None,
        "worker_cpu_pct": round(worker_cpu, 1),
        "client_cpu_pct": round(client_cpu, 1),
        "machine_cpu_pct": round(machine_cpu, 1),
        "load_1m": load,
    }


def table(rows: list[dict[str, Any]]) -> str:
    headers = ["concurrency", "web processes", "database", "requests", "req/s", "p50 ms", "p99 ms", "max ms"]
    headers += ["non-201", "web CPU %", "web CPU ms/req", "worker CPU %", "load client CPU %", "machine CPU %"]
    body = []
    for r in rows:
        lat = r["latency_ms"]
        processes = f"{r.get('nodes', 1)} × {r.get('workers', 1)}"
        row = [r["concurrency"], processes, r["database"], r["requests"], r["rps"], lat["p50"], lat["p99"]]
        row += [lat["max"], r["errors"], r["node_cpu_pct"], r.get("node_cpu_ms_per_request")]
        row += [r.get("worker_cpu_pct"), r.get("client_cpu_pct"), r.get("machine_cpu_pct")]
        body.append(row)
    return format_table(headers, body)


def figures(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The target is judged at the first concurrency; the others show how the tail grows
    once the machine is saturated (no target)."""
    out = []
    for i, r in enumerate(rows):
        lat = r["latency_ms"]
        met = r["rps"] >= TARGET_RPS and lat["p99"] is not None and lat["p99"] <= TARGET_P99_MS and r["errors"] == 0
        out.append(
            {
                "benchmark": "caller_requests",
                "figure": f"POST /api/v1/sessions/, concurrency {r['concurrency']}, {r.get('nodes', 1)} web "
                f"process(es) of {r.get('workers', 1)} uvicorn worker(s), {r['database']}"
                + (", staffed (2 servers, busy ready agents, skill groups named)" if r.get("staffed") else ""),
                "value": f"{r['rps']} req/s · p50 {lat['p50']} ms · p99 {lat['p99']} ms · {r['errors']} errors",
                "target": TARGET_TEXT if i == 0 else "(saturation: no target)",
                "met": met if i == 0 else None,
            }
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s of load")
    parser.add_argument(
        "--concurrency",
        default="8,16",
        help="comma-separated concurrencies, measured in turn; the target is judged at the first",
    )
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds (default 20)")
    parser.add_argument("--profile", action="store_true", help="py-spy the node during the load")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes per web process")
    parser.add_argument(
        "--nodes",
        type=int,
        default=2,
        help="web processes (one uvicorn each, own port), clients spread over them as by a balancer "
        "(uvicorn's --workers share one socket, and the kernel hands most keep-alive connections to one)",
    )
    parser.add_argument(
        "--staffed",
        action="store_true",
        help="two routing servers with skill groups and busy ready agents; callers name skill groups",
    )
    parser.add_argument("--output", default="caller_requests")
    args = parser.parse_args(argv)
    started = time.monotonic()
    concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    seconds = args.seconds or (5.0 if args.quick else 20.0)
    rows = run(concurrencies, seconds, args.profile, args.workers, args.nodes, args.staffed)
    print(table(rows))
    data = {
        "benchmark": "caller_requests",
        "duration_s": round(time.monotonic() - started, 1),
        "rows": rows,
        "figures": figures(rows),
    }
    print(f"\nwritten: {write_results(args.output, data)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
