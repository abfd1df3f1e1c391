"""Scale of monitoring (issue 7, point 4): 10, 100 and 1,000 servers of 4 peers each.

For each size the installation is rebuilt (servers with both links connected, four peers
each, all up, primaries connected, as a running installation looks), simulator processes
serving up to 1,000 peers each are started (``bench/_scale_peers.py``: the simulator's own
``serve`` machinery, counting the pings it answers), and the health monitor runs as a
process of its own (``manage.py runmonitor``, the production command) so its CPU is its
own. After a warm-up, over a measured window:

* **probes/s** answered by the simulators, against the ideal ``peers / interval``;
* **probe period** per peer (gap between two pings of the same peer): p50 / p99 / max.
  The monitor runs one task per peer, not a sequential sweep, so its "cycle time" is this
  period; **lag** = period p99 - interval;
* **monitor CPU**: user + system time of the monitor process / wall time (100 % = one core);
* peers not up at the end (a probe that timed out under load twice in a row marks a peer
  down: a false failure).

Sizes 10/100/1,000 run at the default Policy interval (500 ms); 1,000 servers is run again
at 1 s, the issue's target: 4,000 peers held at a 1 s interval within one core (held:
≥ 95 % of the ideal probe rate, period p99 ≤ interval + 250 ms, no peer falsely down,
monitor CPU < 100 %). Servers have no ``base_url`` here: only peers are probed.

Since issue 16 the simulators push heartbeats and the monitor follows them instead of
probing: the "probes" counted are then the heartbeats pushed, at the interval the monitor
asked for (the policy's 100 ms, stretched to one heartbeat per peer per ``peers / 4,000``
seconds: 1 s at 4,000 peers). Every peer health change or switchover inside the measured
window is a false one (all peers stay up), and the size is not held if there is one: with
``--window 600`` a size is a soak (``--sizes 100@500 --window 600``: 400 peers for 10 min).

Run: ``.venv/bin/python -m bench.monitor_scale [--quick] [--window S]``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._common import format_table, loadavg_1m, write_results
from bench._stack import PYTHON, BenchStack, Child, PySpy, django_stack, parse_ports, set_policy, wait_until

PEERS_PER_PROCESS = 1000


def seed(servers: int, ports: list[int]) -> None:
    from django.utils import timezone

    from failover.choices import Health, LinkState, PeerConnection, PeerKind, PeerPriority
    from failover.models import Link, Peer, Server

    now = timezone.now()
    Server.objects.all().delete()
    names = [f"scale-{n:05d}" for n in range(servers)]
    Server.objects.bulk_create(Server(name=name, health=Health.UP, health_changed_at=now) for name in names)
    rows = list(Server.objects.order_by("name"))
    links, peers = [], []
    port_iter = iter(ports)
    for server in rows:
        for kind, short in ((PeerKind.MEDIA_BLENDER, "mb"), (PeerKind.ADMIN_WORKSTATION, "aw")):
            links.append(Link(server=server, kind=kind, state=LinkState.CONNECTED, epoch=1, state_changed_at=now))
            for priority in (PeerPriority.PRIMARY, PeerPriority.SECONDARY):
                primary = priority == PeerPriority.PRIMARY
                peers.append(
                    Peer(
                        server=server,
                        kind=kind,
                        priority=priority,
                        name=f"{server.name}-{short}-{int(priority)}",
                        host="127.0.0.1",
                        port=next(port_iter),
                        health=Health.UP,
                        health_changed_at=now,
                        connection=PeerConnection.CONNECTED if primary else PeerConnection.STANDBY,
                        connected_epoch=1 if primary else None,
                        connected_at=now if primary else None,
                    )
                )
    Link.objects.bulk_create(links, batch_size=2000)
    Peer.objects.bulk_create(peers, batch_size=2000)


def _reports(sims: list[tuple[Child, Path]]) -> list[dict[str, Any]]:
    """Each simulator process's figures since the previous call."""
    for child, stats in sims:
        stats.unlink(missing_ok=True)
        child.signal(signal.SIGUSR1)
    reports = []
    for _, stats in sims:
        wait_until(stats.exists, 10, f"stats {stats}")
        reports.append(json.loads(stats.read_text()))
    return reports


def measure(
    stack: BenchStack,
    servers: int,
    interval_ms: int,
    warmup: float,
    window: float,
    profile: bool = False,
    heartbeat_ms: int | None = None,
    timeout_ms: int | None = None,
) -> dict[str, Any]:
    from django.utils import timezone

    from failover.choices import Health
    from failover.models import FailoverEvent, Peer, Policy
    from failover.monitor.monitor import heartbeat_interval_for

    set_policy(probe_interval_ms=interval_ms)
    if heartbeat_ms is not None:
        set_policy(heartbeat_interval_ms=heartbeat_ms)
    if timeout_ms is not None:
        set_policy(probe_timeout_ms=timeout_ms)
    total = servers * 4
    sims: list[tuple[Child, Any]] = []
    ports: list[int] = []
    for i in range(0, total, PEERS_PER_PROCESS):
        count = min(PEERS_PER_PROCESS, total - i)
        stats = stack.run_dir / f"scale-{servers}-{i}.json"
        child = stack.track(
            Child(
                f"scale-{servers}-{i}",
                [PYTHON, "-m", "bench._scale_peers", "--count", str(count), "--stats", str(stats)],
                stack.peer_env(),
                stack.run_dir / f"scale-{servers}-{i}.log",
                stdout_pipe=True,
            ).start()
        )
        words = dict(pair.split("=", 1) for pair in child.read_line(60).split()[1:])
        ports += parse_ports(words["ports"])
        sims.append((child, stats))
    seed(servers, ports)
    monitor = stack.monitor_process()
    try:
        # Warm-up: until every peer has been probed within one period (the monitor opens
        # its held connections one task each), at least ``warmup`` s, at most 60 s.
        began = time.monotonic()
        while True:
            time.sleep(2.0)
            reports = _reports(sims)
            pinged = sum(r["peers_pinged"] for r in reports)
            waited = time.monotonic() - began
            if (pinged == total and waited >= warmup) or waited > 60:
                break
        warmed = round(time.monotonic() - began, 1)
        window_began = timezone.now()
        cpu0, t0 = monitor.cpu_seconds(), time.monotonic()
        sim_cpu0 = sum(child.cpu_seconds() for child, _ in sims)
        loads = [loadavg_1m()]
        profiler = PySpy(monitor.pid, window, f"monitor_scale-{servers}-{interval_ms}") if profile else None
        time.sleep(window)
        reports = _reports(sims)
        cpu1, t1 = monitor.cpu_seconds(), time.monotonic()
        sim_cpu = (sum(child.cpu_seconds() for child, _ in sims) - sim_cpu0) / (t1 - t0) * 100
        loads.append(loadavg_1m())
        not_up = Peer.objects.exclude(health=Health.UP).count()
        # Every health change or switchover in the window is a false one: all peers are up.
        health_changes = Peer.objects.filter(health_changed_at__gte=window_began).count()
        switchovers = FailoverEvent.objects.filter(detected_at__gte=window_began).count()
        if profiler is not None:
            profiler.finish()
    finally:
        monitor.stop()
        for child, _ in sims:
            child.stop()
    pings = sum(r["pings"] for r in reports)
    seconds = max(r["seconds"] for r in reports)
    gaps_p50 = max(r["gap_p50"] or 0 for r in reports)
    gaps_p99 = max(r["gap_p99"] or 0 for r in reports)
    gaps_max = max(r["gap_max"] or 0 for r in reports)
    # Peers that push heartbeats are not probed: their signs of life come every heartbeat
    # interval the monitor asks for (the policy's, stretched for many peers).
    heartbeat = heartbeat_interval_for(Policy.current().heartbeat_interval_ms / 1000, total)
    interval = heartbeat or interval_ms / 1000
    ideal = total / interval
    cpu = (cpu1 - cpu0) / (t1 - t0) * 100
    quiet = not_up == 0 and health_changes == 0 and switchovers == 0
    held = pings / seconds >= 0.95 * ideal and gaps_p99 <= interval + 0.25 and quiet and cpu < 100
    return {
        "servers": servers,
        "peers": total,
        "interval_ms": interval_ms,
        "heartbeat_ms": round(heartbeat * 1000, 1) if heartbeat else None,
        "window_s": window,
        "probes_per_s": round(pings / seconds, 1),
        "ideal_per_s": round(ideal, 1),
        "rate_ratio": round(pings / seconds / ideal, 3),
        "period_p50_ms": round(gaps_p50 * 1000, 1),
        "period_p99_ms": round(gaps_p99 * 1000, 1),
        "period_max_ms": round(gaps_max * 1000, 1),
        "lag_p99_ms": round((gaps_p99 - interval) * 1000, 1),
        "monitor_cpu_pct": round(cpu, 1),
        "simulators_cpu_pct": round(sim_cpu, 1),
        "warmup_s": warmed,
        "peers_not_up": not_up,
        "health_changes": health_changes,
        "switchovers": switchovers,
        "peers_pinged": sum(r["peers_pinged"] for r in reports),
        "load_1m": loads,
        "held": held,
    }


def table(rows: list[dict[str, Any]]) -> str:
    headers = ["servers", "peers", "interval ms", "heartbeat ms", "window s", "signs of life/s", "ideal/s"]
    headers += ["period p50/p99/max ms", "lag p99 ms", "monitor CPU %", "simulators CPU %"]
    headers += ["not up / health changes / switchovers", "held"]
    return format_table(
        headers,
        [
            [
                r["servers"],
                r["peers"],
                r["interval_ms"],
                r["heartbeat_ms"] or "off",
                r["window_s"],
                r["probes_per_s"],
                r["ideal_per_s"],
                f"{r['period_p50_ms']} / {r['period_p99_ms']} / {r['period_max_ms']}",
                r["lag_p99_ms"],
                r["monitor_cpu_pct"],
                r["simulators_cpu_pct"],
                f"{r['peers_not_up']} / {r['health_changes']} / {r['switchovers']}",
                "yes" if r["held"] else "no",
            ]
            for r in rows
        ],
    )


def figures(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        target = r["peers"] == 4000 and r["interval_ms"] == 1000
        out.append(
            {
                "benchmark": "monitor_scale",
                "figure": f"{r['peers']} peers @ {r['interval_ms']} ms: monitor CPU, period p99, probe rate",
                "value": f"{r['monitor_cpu_pct']} % CPU · p99 {r['period_p99_ms']} ms · "
                f"{r['rate_ratio'] * 100:.0f} % of ideal · {r['peers_not_up']} down · "
                f"{r['health_changes']} health changes in {r['window_s']:.0f} s",
                "target": "held within one core" if target else "-",
                "met": r["held"] if target else None,
            }
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 and 100 servers, short windows")
    parser.add_argument("--window", type=float, default=None, help="measured seconds per size (default 15)")
    parser.add_argument("--profile", action="store_true", help="py-spy the monitor at 1,000 servers")
    parser.add_argument("--sizes", default=None, help="e.g. 1000@1000,100@500 (servers@interval_ms)")
    parser.add_argument(
        "--heartbeat-ms", type=int, default=None, help="the policy's heartbeat_interval_ms (0: probes, no heartbeats)"
    )
    parser.add_argument("--timeout-ms", type=int, default=None, help="the policy's probe_timeout_ms")
    parser.add_argument("--output", default="monitor_scale")
    args = parser.parse_args(argv)
    window = args.window or (5.0 if args.quick else 15.0)
    plan = [(10, 500), (100, 500)] if args.quick else [(10, 500), (100, 500), (1000, 500), (1000, 1000)]
    if args.sizes:
        plan = [(int(a), int(b)) for a, b in (item.split("@") for item in args.sizes.split(","))]
    started = time.monotonic()
    rows = []
    with django_stack("scale") as stack:
        for servers, interval in plan:
            profile = args.profile and servers >= 1000
            rows.append(measure(stack, servers, interval, 4.0, window, profile, args.heartbeat_ms, args.timeout_ms))
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    print(table(rows))
    data = {
        "benchmark": "monitor_scale",
        "duration_s": round(time.monotonic() - started, 1),
        "window_s": window,
        "rows": rows,
        "figures": figures(rows),
    }
    print(f"\nwritten: {write_results(args.output, data)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
