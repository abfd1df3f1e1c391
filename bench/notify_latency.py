"""Notifications (issue 19, point 6): crash → webhook received, and throughput with a slow receiver.

Real processes: two Media Blender simulators, a web node with its health monitor, a
Celery worker and the notifier (as production runs them), the run's own Redis and
database (``bench/_stack.py``), and webhook receivers (``tests/webhook_receiver.py``,
which verify the signature and write down when each POST arrived).

* **Latency**: a webhook channel wants *link down* alerts. Each trial SIGKILLs both
  Media Blenders of the pair at once and measures from just before the kill until the
  receiver has the ``raised`` notification (its own arrival time, same machine clock).
  Then both come back, the link reconnects and its *cleared* notification arrives
  before the next trial.
* **Throughput with one slow receiver**: two channels want every alert, one receiver
  answers after 5 s, the other at once; ``--alerts`` alerts are raised at once (one per
  server). Measured: how long the fast channel's notifications took (p50/p99 from each
  alert's raise), how long (from the first raise) until every notification of each channel had arrived, and the
  deliveries per second. Run twice: on the default setup (the notifications' own queue,
  served by the notifier, a worker of 20 threads: docs/operations.md, "Notifications"),
  and with ``NOTIFY_QUEUE`` empty (the ordinary worker, prefork, 2 processes: a slow
  receiver holds a process).

Run: ``.venv/bin/python -m bench.notify_latency [--quick] [--trials N] [--alerts N]``;
``--throughput-only`` skips the crash trials.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bench._common import RESULTS_DIR, BenchError, format_table, loadavg_1m, summarize, write_results
from bench._stack import PYTHON, BenchStack, Child, connected_peer_id, django_stack, media_blender_pair, set_policy
from bench._stack import wait_until as bench_wait

TARGET_P99_S = 2.0
SECRET = "bench-secret"  # noqa: S105 (the throwaway receivers of this run)
SLOW_DELAY_S = 5.0


class Receiver:
    def __init__(self, stack: BenchStack, name: str, delay: float = 0.0) -> None:
        from bench._common import free_port

        self.port = free_port()
        self.out = stack.run_dir / f"received-{name}.jsonl"
        argv = [PYTHON, "tests/webhook_receiver.py", "--port", str(self.port), "--secret", SECRET]
        argv += ["--out", str(self.out), "--delay", str(delay)]
        self.child = stack.track(Child(f"receiver-{name}", argv, stack.peer_env(), stack.run_dir / f"{name}.log"))
        self.child.start()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        bench_wait(self._listening, 15, f"receiver {name} listening")

    def _listening(self) -> bool:
        import socket

        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def received(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]


def channel(name: str, url: str, kinds: list[str], severity: str) -> Any:
    from failover.models import NotificationChannel

    return NotificationChannel.objects.create(
        name=name, kind="webhook", url=url, secret=SECRET, alert_kinds=kinds, min_severity=severity
    )


def latency_trials(stack: BenchStack, trials: int) -> dict[str, Any]:
    from failover.choices import AlertKind

    receiver = Receiver(stack, "latency")
    channel("on call", receiver.url, [AlertKind.LINK_DOWN], "critical")
    set_policy(flap_max_transitions=1000)
    link, sims, peers = media_blender_pair(stack)
    stack.node(monitor=True)
    bench_wait(lambda: connected_peer_id(link.pk) is not None, 30, "the pair connected")
    rows = []
    for n in range(trials):
        seen = len(receiver.received())
        killed = time.time()
        for sim in sims:
            sim.kill()
        got = bench_wait(
            lambda seen=seen: [r for r in receiver.received()[seen:] if r["body"]["event"] == "raised"],
            30,
            "link down notification",
        )
        rows.append(
            {"s": round(got[0]["received_at"] - killed, 4), "verified": got[0]["verified"], "load_1m": loadavg_1m()}
        )
        print(f"  latency trial {n + 1}/{trials}: {rows[-1]}", file=sys.stderr, flush=True)
        for sim in sims:
            sim.restart()
        bench_wait(
            lambda seen=seen: any(r["body"]["event"] == "cleared" for r in receiver.received()[seen:]),
            60,
            "link restored notification",
        )
    return {"trials": rows, "latency_s": summarize([r["s"] for r in rows], digits=4)}


def throughput(stack: BenchStack, alerts: int, label: str) -> dict[str, Any]:
    from common.actors import MONITOR
    from failover.choices import AlertKind, AlertSeverity
    from failover.models import NotificationChannel
    from failover.services.alerts import alert_raise
    from failover.services.topology import server_ensure

    NotificationChannel.objects.all().delete()
    slow, fast = Receiver(stack, f"slow-{label}", SLOW_DELAY_S), Receiver(stack, f"fast-{label}")
    channel(f"slow {label}", slow.url, [], "info")
    channel(f"fast {label}", fast.url, [], "info")
    servers = [server_ensure(name=f"tp-{label}-{n:03d}") for n in range(alerts)]
    started = time.time()
    for server in servers:
        alert_raise(
            server=server, kind=AlertKind.SERVER_FAILED, message="bench", severity=AlertSeverity.CRITICAL, actor=MONITOR
        )
    timeout = alerts * SLOW_DELAY_S + 60
    bench_wait(lambda: len(fast.received()) >= alerts, timeout, "every fast notification", interval=0.05)
    fast_done = time.time() - started
    bench_wait(lambda: len(slow.received()) >= alerts, timeout, "every slow notification", interval=0.1)
    slow_done = time.time() - started
    # From each alert's own raise (its ``raised_at``): raising the batch takes a while too.
    fast_latency = [
        r["received_at"] - datetime.fromisoformat(r["body"]["alert"]["raised_at"]).timestamp() for r in fast.received()
    ]
    return {
        "label": label,
        "alerts": alerts,
        "fast_latency_s": summarize(fast_latency, digits=3),
        "fast_all_s": round(fast_done, 2),
        "slow_all_s": round(slow_done, 2),
        "deliveries_per_s": round(2 * alerts / slow_done, 2),
        "load_1m": loadavg_1m(),
    }


def run(trials: int, alerts: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with django_stack("notify") as stack:
        stack.worker(concurrency=2)
        start_notifier(stack)
        if trials:
            results["latency"] = latency_trials(stack, trials)
        results["database"] = stack.database_kind
        results["notifier"] = throughput(stack, alerts, "notifier")
    # Again with the notifications on the ordinary queue: settings are read once per
    # process, so that run is a child process of its own.
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"notify-shared-{os.getpid()}.json"
    argv = [PYTHON, "-m", "bench.notify_latency", "--shared-only", "--alerts", str(alerts), "--json-out", str(out)]
    code = subprocess.call(argv, env={**os.environ, "NOTIFY_QUEUE": ""})
    if code != 0:
        raise BenchError(f"the shared-queue run failed ({code})")
    results["shared"] = json.loads(out.read_text())
    out.unlink()
    return results


def start_notifier(stack: BenchStack) -> None:
    """The notifier as the stack and collabadmin-notifier.service run it."""
    argv = [PYTHON, "-m", "celery", "-A", "collabadmin", "worker", "--notifier", "--pool", "threads"]
    argv += ["--concurrency", "20", "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "-n", "notify@%h"]
    stack.track(Child("notifier", argv, stack.child_env(), stack.run_dir / "notifier.log").start())
    from collabadmin.celery import app

    bench_wait(
        lambda: any(name.startswith("notify@") for reply in app.control.ping(timeout=0.5) for name in reply),
        60,
        "the notifier answering",
    )


def run_shared(alerts: int) -> dict[str, Any]:
    """The notifications on the ordinary queue (``NOTIFY_QUEUE`` empty): the ordinary worker alone."""
    with django_stack("notify-shared") as stack:
        from django.conf import settings  # read once the stack has set the environment

        if settings.NOTIFY_QUEUE:
            raise BenchError("the shared run needs NOTIFY_QUEUE empty")
        stack.worker(concurrency=2)
        return throughput(stack, alerts, "shared")


def figures(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    if "latency" in results:
        lat = results["latency"]["latency_s"]
        rows.append(
            {
                "benchmark": "notify_latency",
                "figure": f"SIGKILL of both peers → webhook received, n={lat['n']}",
                "value": f"p50 {lat['p50']:.3f} s · p99 {lat['p99']:.3f} s",
                "target": f"p99 ≤ {TARGET_P99_S} s",
                "met": lat["p99"] is not None and lat["p99"] <= TARGET_P99_S,
            }
        )
    setups = {"notifier": "the notifier (default)", "shared": "NOTIFY_QUEUE empty, the ordinary"}
    for key in ("shared", "notifier"):
        data = results[key]
        rows.append(
            {
                "benchmark": "notify_latency",
                "figure": f"{data['alerts']} alerts, fast + 5 s receiver, {setups[key]} worker",
                "value": f"fast p99 {data['fast_latency_s']['p99']:.2f} s · all {data['slow_all_s']:.1f} s · "
                f"{data['deliveries_per_s']} deliveries/s",
                "target": "-",
                "met": None,
            }
        )
    return rows


def table(results: dict[str, Any]) -> str:
    headers = ["run", "alerts", "fast p50/p99 s", "fast all in s", "slow all in s", "deliveries/s", "load 1m"]
    rows = []
    for key in ("shared", "notifier"):
        d = results[key]
        lat = d["fast_latency_s"]
        rows.append(
            [
                key,
                d["alerts"],
                f"{lat['p50']} / {lat['p99']}",
                d["fast_all_s"],
                d["slow_all_s"],
                d["deliveries_per_s"],
                d["load_1m"],
            ]
        )
    head = ""
    if "latency" in results:
        lat = results["latency"]["latency_s"]
        head = f"crash → webhook: n={lat['n']}, p50 {lat['p50']} s, p99 {lat['p99']} s, max {lat['max']} s\n\n"
    return head + format_table(headers, rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 trials, 6 alerts (a smoke run)")
    parser.add_argument("--trials", type=int, default=None, help="crash trials (default 20)")
    parser.add_argument("--alerts", type=int, default=None, help="alerts of the throughput run (default 20)")
    parser.add_argument("--throughput-only", action="store_true", help="skip the crash trials")
    parser.add_argument("--shared-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json-out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.shared_only:
        Path(args.json_out).write_text(json.dumps(run_shared(args.alerts or 20)))
        return 0
    trials = 0 if args.throughput_only else args.trials or (5 if args.quick else 20)
    try:
        results = run(trials, args.alerts or (6 if args.quick else 20))
    except BenchError as error:
        print(f"notify_latency failed: {error}", file=sys.stderr)
        return 1
    print(table(results))
    data = {
        "benchmark": "notify_latency",
        "duration_s": round(time.monotonic() - started, 1),
        "figures": figures(results),
        "results": results,
    }
    print(f"\nwritten: {write_results('notify_latency', data)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
