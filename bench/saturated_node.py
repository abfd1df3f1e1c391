"""How fast a saturated node answers its health probe: on the event loop, and through Django.

``python -m bench.saturated_node [--seconds 60] [--floods 2] [--connections 100]``

A real node (uvicorn, the project's ASGI app, one process as in production) is flooded by
``--floods`` processes of ``bench.http_flood`` (one per core), each keeping
``--connections`` requests in flight: ten times its HTTP threads each, far more than it
can serve. Meanwhile a prober asks, every 100 ms in turn:

* ``GET /healthz``: answered on the event loop, ahead of the queue (``HealthzFirst``);
* ``HEAD /healthz``: not a GET, so it goes through Django on the thread pool like any
  request (Django answers 405): what ``/healthz`` cost before it moved to the loop.

The figures are what a server probe's time-out must cover (``SERVER_PROBE_TIMEOUT_FLOOR_MS``
in failover/models/policy.py). Also printed: what the node served, and the longest wait
for a thread it reported in its heartbeat.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from collections.abc import Sequence
from typing import Any

from bench._common import format_table, free_port, loadavg_1m, summarize, write_results
from bench._stack import PYTHON, BenchStack, Child, django_stack

PROBE_EVERY_SECONDS = 0.1
PROBE_TIMEOUT_SECONDS = 10.0


class Prober(threading.Thread):
    """Sends ``method /healthz`` every 100 ms (the next once the previous one answered) and
    keeps the latencies; one prober per method, so a slow path does not slow the other."""

    def __init__(self, port: int, method: str) -> None:
        super().__init__(daemon=True)
        self.port, self.method = port, method
        self.latencies: list[float] = []
        self.unanswered = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(PROBE_EVERY_SECONDS):
            started = time.perf_counter()
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=PROBE_TIMEOUT_SECONDS)
            try:
                connection.request(self.method, "/healthz")
                connection.getresponse().read()
                self.latencies.append(time.perf_counter() - started)
            except (OSError, http.client.HTTPException):
                self.unanswered += 1
            finally:
                connection.close()


def run(seconds: float, floods: int, connections: int) -> dict[str, Any]:
    with django_stack("saturated_node") as stack:
        # Django is set up by django_stack: the project's modules are imported after it.
        from django.contrib.auth import get_user_model

        from failover.models import NodeHeartbeat
        from failover.services.api_tokens import token_create
        from failover.services.topology import server_ensure

        node_port = free_port()
        server = server_ensure(name="bench-a", base_url=f"http://127.0.0.1:{node_port}")
        user = get_user_model().objects.create(username="bench-flood", is_superuser=True)  # reads /api/v1/status/
        _, token = token_create(user=user, name="bench", actor="system:bench")
        node = stack.node("bench-a", monitor=False, port=node_port)
        probers = {method: Prober(node.port, method) for method in ("GET", "HEAD")}
        children = [_flood(stack, n, node.port, token, seconds, connections) for n in range(floods)]
        for prober in probers.values():
            prober.start()
        worst_wait_ms, cpu_before = 0.0, node.child.cpu_seconds()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            waits = NodeHeartbeat.objects.filter(server=server).values_list("http_wait_ms", flat=True)
            worst_wait_ms = max(worst_wait_ms, *waits, 0.0)
            time.sleep(1.0)
        node_cpu = (node.child.cpu_seconds() - cpu_before) / seconds
        served = [json.loads(child.read_line(timeout=60) or "{}") for child in children]
        for prober in probers.values():
            prober.stop.set()
            prober.join(PROBE_TIMEOUT_SECONDS + 1)
    return {
        "seconds": seconds,
        "floods": floods,
        "connections": connections,
        "loadavg_1m": loadavg_1m(),
        "node_cpu_cores": round(node_cpu, 2),
        "served_per_second": round(sum(f.get("per_second", 0) for f in served), 1),
        "flood_p50_ms": [f.get("p50_ms") for f in served],
        "worst_http_wait_ms": round(worst_wait_ms),
        "healthz_loop_ms": summarize([s * 1000 for s in probers["GET"].latencies], digits=1),
        "healthz_loop_unanswered": probers["GET"].unanswered,
        "through_django_ms": summarize([s * 1000 for s in probers["HEAD"].latencies], digits=1),
        "through_django_unanswered": probers["HEAD"].unanswered,
    }


def _flood(stack: BenchStack, n: int, port: int, token: str, seconds: float, connections: int) -> Child:
    argv = [PYTHON, "-m", "bench.http_flood", "--port", str(port), "--seconds", str(seconds)]
    argv += ["--connections", str(connections), "--token", token]
    log = stack.run_dir / f"flood-{n}.log"
    return stack.track(Child(f"flood-{n}", argv, stack.child_env(), log, stdout_pipe=True).start())


def table(result: dict[str, Any]) -> str:
    rows = []
    for label, key in (("GET /healthz (event loop)", "healthz_loop"), ("HEAD /healthz (Django)", "through_django")):
        figures = result[f"{key}_ms"]
        rows.append(
            [
                label,
                figures.get("n"),
                figures.get("p50"),
                figures.get("p99"),
                figures.get("max"),
                result[f"{key}_unanswered"],
            ]
        )
    head = (
        f"{result['floods']} floods x {result['connections']} connections for {result['seconds']:.0f} s: "
        f"node served {result['served_per_second']} req/s on {result['node_cpu_cores']} cores, "
        f"worst wait for a thread {result['worst_http_wait_ms']} ms, load average {result['loadavg_1m']}\n"
    )
    return head + format_table(["probe", "n", "p50 ms", "p99 ms", "max ms", "unanswered"], rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--floods", type=int, default=2, help="flood processes (one per core)")
    parser.add_argument("--connections", type=int, default=100, help="requests in flight per flood")
    parser.add_argument("--output", default="saturated_node")
    args = parser.parse_args(argv)
    result = run(args.seconds, args.floods, args.connections)
    print(table(result))
    print(f"\nwritten: {write_results(args.output, {'benchmark': 'saturated_node', 'result': result})}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
