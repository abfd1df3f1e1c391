"""A node saturated with requests is never declared failed and loses no session.

Two real web nodes run the health monitor as in production; routing-a is started first so
that it holds the monitor's lease: the saturated node is the monitor's own node, the
hardest case (its probes and its heartbeat share the starved process). Two flood
processes (bench/http_flood.py), one per core, keep far more requests in flight than its
HTTP threads can serve for ``SATURATE_SECONDS`` (60 here; the issue's 10 minutes with
``SATURATE_SECONDS=600``). Throughout, routing-a must stay up, and afterwards its agent
must still be logged in and its sessions untouched. It may be degraded meanwhile, and
new callers then go to routing-b.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from failover.choices import FailoverKind, Health
from failover.models import FailoverEvent, Lease, NodeHeartbeat, Server
from failover.monitor.monitor import LEASE_NAME
from sessions.choices import AgentState, SessionState
from sessions.models import Agent, CollaborationSession
from tests.factories import AgentFactory, ServerFactory, SessionFactory, StaffFactory, api_key
from tests.processes import ROOT, free_port, http_status, project_env, start_node, stop_process, wait_for_node
from tests.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SECONDS = float(os.environ.get("SATURATE_SECONDS", "60"))
FLOODS = 2  # one per core of the machine
CONNECTIONS = 100  # per flood: ten times the node's HTTP threads each


def flood(port: int, token: str, seconds: float, log: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "bench.http_flood", "--port", str(port), "--connections", str(CONNECTIONS)]
    argv += ["--seconds", str(seconds), "--token", token]
    with open(log, "ab") as err:
        return subprocess.Popen(argv, cwd=ROOT, env=project_env(), stdout=subprocess.PIPE, stderr=err, text=True)


class HealthzProber(threading.Thread):
    """Asks /healthz every 200 ms from outside, as a load balancer would, and keeps the latencies."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.latencies, self.unanswered = url, [], 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            started = time.perf_counter()
            if http_status(self.url, timeout=5) == 200:
                self.latencies.append(time.perf_counter() - started)
            else:
                self.unanswered += 1


@pytest.fixture
def installation(tmp_path):
    """routing-a (holding the monitor's lease) and routing-b, with work on routing-a."""
    ports = {"routing-a": free_port(), "routing-b": free_port()}
    servers = {name: ServerFactory(name=name, base_url=f"http://127.0.0.1:{port}") for name, port in ports.items()}
    processes = []
    try:
        for name, port in ports.items():
            processes.append(start_node(name, port, tmp_path / f"{name}.log"))
            wait_for_node(f"http://127.0.0.1:{port}", processes[-1], tmp_path / f"{name}.log")
            if name == "routing-a":
                wait_until(
                    lambda: Lease.objects.filter(name=LEASE_NAME, holder__startswith="routing-a:").exists(),
                    timeout=15,
                    message="routing-a's monitor holds the lease",
                )
        wait_until(
            lambda: Server.objects.filter(health=Health.UP).count() == 2 and NodeHeartbeat.objects.count() == 2,
            timeout=30,
            message="both servers up and both nodes beating",
        )
        yield servers, ports
    finally:
        for process in processes:
            stop_process(process)


def test_a_saturated_node_is_never_failed_and_loses_no_session(installation, tmp_path):
    servers, ports = installation
    a = servers["routing-a"]
    agent = AgentFactory(server=a, state=AgentState.READY, max_sessions=1)
    active = SessionFactory(server=a, state=SessionState.ACTIVE, agent=agent)
    queued = SessionFactory(server=a)
    token = api_key(StaffFactory(username="flood"))
    prober = HealthzProber(f"http://127.0.0.1:{ports['routing-a']}/healthz")
    floods = [flood(ports["routing-a"], token, SECONDS, tmp_path / f"flood-{n}.log") for n in range(FLOODS)]
    prober.start()
    worst_wait_ms, degraded_seen, monitor_holders = 0.0, False, set()
    try:
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            health, degraded_since = Server.objects.filter(pk=a.pk).values_list("health", "degraded_since").get()
            assert health == Health.UP, f"routing-a declared {health} while only busy"
            degraded_seen |= degraded_since is not None
            waits = NodeHeartbeat.objects.filter(server=a).values_list("http_wait_ms", flat=True)
            worst_wait_ms = max(worst_wait_ms, *waits, 0.0)
            monitor_holders.add(Lease.objects.get(name=LEASE_NAME).holder.split(":")[0])
            time.sleep(0.5)  # the pace of this observer; every assertion is on recorded state
        results = [json.loads(process.communicate(timeout=60)[0] or "{}") for process in floods]
    finally:
        prober.stop.set()
        for process in floods:
            stop_process(process)

    latencies = sorted(prober.latencies)
    print(
        f"saturated {SECONDS:.0f} s: floods {results}; worst HTTP wait reported by the node {worst_wait_ms:.0f} ms; "
        f"/healthz from outside p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms, "
        f"unanswered {prober.unanswered}; degraded seen {degraded_seen}; monitor on {sorted(monitor_holders)}"
    )
    # It really was more than the node could serve: requests queued for a thread for a
    # quarter of a second or more, dozens of times what one takes (a few ms); a node that
    # keeps up queues nothing. (Not an absolute second, as before: the wait is the flood's
    # 200 connections over the node's rate, 0.83-0.91 s on this machine, shorter on a
    # faster one.)
    assert worst_wait_ms >= 250
    assert not FailoverEvent.objects.filter(kind=FailoverKind.SERVER_FAILED).exists()
    agent = Agent.objects.get(pk=agent.pk)
    assert agent.state == AgentState.READY
    assert CollaborationSession.objects.get(pk=active.pk).state == SessionState.ACTIVE
    assert CollaborationSession.objects.get(pk=queued.pk).state == SessionState.QUEUED
    assert prober.unanswered == 0
