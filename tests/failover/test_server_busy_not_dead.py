"""Busy is not dead, on real node processes: a slow node stays up (degraded at worst), a
killed node is failed within 2 s, a stopped one within the documented bound.

Two real web nodes (uvicorn + the project's ASGI app, each writing its heartbeat) and the
health monitor in this process, with the default server thresholds. Faults are real: a
SIGKILL, a SIGSTOP, and the way to a node's /healthz slowed or stalled in a TCP proxy.
The saturated node is in test_saturated_node.py.
"""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from failover.choices import AlertKind, AlertSeverity, FailoverKind, Health
from failover.models import Alert, FailoverEvent, Lease, NodeHeartbeat, Policy, Server
from failover.monitor.monitor import LEASE_NAME
from failover.monitor.runner import monitor_in_thread
from failover.monitor.server_evidence import DEGRADED_CLEAR_SECONDS
from sessions.choices import AgentState, EndReason, SessionState
from sessions.services.director import choose_server
from tests.factories import AgentFactory, ServerFactory, SessionFactory, StaffFactory
from tests.processes import free_port, start_node, stop_process, wait_for_node
from tests.tcp_proxy import tcp_proxy
from tests.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# The bound the documentation gives for a stopped node (docs/architecture.md): the
# policy's silence (3 s by default) plus one second for the heartbeat reading and the write.
STOPPED_BOUND_EXTRA_S = 1.0


@dataclass
class Node:
    server: Server
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self) -> str:
        return f"--- {self.server.name}\n{self.log.read_text(errors='replace')[-3000:]}"


def start(name: str, tmp_path: Path, *, base_port: int | None = None) -> Node:
    port = free_port()
    server = ServerFactory(name=name, base_url=f"http://127.0.0.1:{base_port or port}")
    log = tmp_path / f"{name}.log"
    # The monitor runs in this test's process, so a fault of a node never takes it along.
    process = start_node(name, port, log, COLLABADMIN_RUN_MONITOR="0")
    wait_for_node(f"http://127.0.0.1:{port}", process, log)
    return Node(server, port, process, log)


@pytest.fixture
def nodes(tmp_path):
    started: dict[str, Node] = {}
    try:
        for name in ("routing-a", "routing-b"):
            started[name] = start(name, tmp_path)
        yield started
    finally:
        for node in started.values():
            stop_process(node.process)


def both_up_and_beating(nodes: dict[str, Node]) -> None:
    wait_until(
        lambda: (
            Server.objects.filter(health=Health.UP).count() == len(nodes)
            and NodeHeartbeat.objects.values("server").distinct().count() == len(nodes)
        ),
        timeout=20,
        message="both servers up and both nodes beating",
        diagnostics=lambda: "\n".join(node.log_tail() for node in nodes.values()),
    )


def failure_of(server: Server) -> FailoverEvent | None:
    return FailoverEvent.objects.filter(server=server, kind=FailoverKind.SERVER_FAILED).first()


def test_a_killed_node_is_failed_within_two_seconds_and_its_queue_moves(nodes):
    a, b = nodes["routing-a"], nodes["routing-b"]
    agent = AgentFactory(server=a.server, state=AgentState.READY)
    queued = SessionFactory(server=a.server)
    with monitor_in_thread():
        both_up_and_beating(nodes)
        killed_at = time.time()
        a.process.send_signal(signal.SIGKILL)
        event = wait_until(lambda: failure_of(a.server), timeout=10, message="routing-a failed")

    took = event.detected_at.timestamp() - killed_at
    print(f"SIGKILL -> server failed: {took:.3f} s")
    assert took <= 2.0
    # A probe under way when it died sees its connection reset; the next ones are refused.
    assert any(word in event.reason for word in ("connection refused", "connection reset"))
    agent.refresh_from_db()
    queued.refresh_from_db()
    assert agent.state == AgentState.LOGGED_OUT
    assert queued.server == b.server
    assert queued.state == SessionState.QUEUED
    assert Server.objects.get(pk=b.server.pk).health == Health.UP


def test_a_stopped_node_is_failed_within_its_silence_and_not_before_its_heartbeat_ages(nodes):
    a = nodes["routing-a"]
    silence = Policy.current().server_silence_seconds
    active = SessionFactory(server=a.server, state=SessionState.ACTIVE, agent=AgentFactory(server=a.server))
    with monitor_in_thread():
        both_up_and_beating(nodes)
        stopped_at = time.time()
        a.process.send_signal(signal.SIGSTOP)
        event = wait_until(lambda: failure_of(a.server), timeout=15, message="routing-a failed")

    took = event.detected_at.timestamp() - stopped_at
    print(f"SIGSTOP -> server failed: {took:.3f} s (silence {silence} s)")
    # Not on the first probes left unanswered: only once the heartbeat said it too (its
    # last beat came at most one second before the stop).
    assert took >= silence - 1.0
    assert took <= silence + STOPPED_BOUND_EXTRA_S
    assert "no heartbeat" in event.reason
    active.refresh_from_db()
    assert active.end_reason == EndReason.SERVER_FAILED


def test_the_fuzzing_policy_no_longer_fails_a_server_for_one_late_answer(tmp_path, nodes):
    """The incident: peers' probes set to 50 ms / 20 ms / fall 1 through the API, then one
    late answer of routing-a's /healthz ended its work. Servers now have thresholds of
    their own; the way to routing-a's /healthz is slowed here by 100 ms for real."""
    Policy.objects.filter(pk=Policy.current().pk).update(probe_interval_ms=50, probe_timeout_ms=20, fall=1)
    a = nodes["routing-a"]
    queued = SessionFactory(server=a.server)
    with tcp_proxy(a.port) as proxy:
        Server.objects.filter(pk=a.server.pk).update(base_url=f"http://127.0.0.1:{proxy.port}")
        with monitor_in_thread():
            both_up_and_beating(nodes)
            proxy.delay = 0.1
            slowed_from = proxy.connections
            wait_until(
                lambda: proxy.connections >= slowed_from + 10,
                timeout=20,
                message="ten probes through the slowed path",
            )
    assert failure_of(a.server) is None
    queued.refresh_from_db()
    assert queued.state == SessionState.QUEUED
    assert queued.server == a.server


def test_a_node_whose_healthz_stalls_while_it_beats_is_degraded_not_failed(nodes):
    a, b = nodes["routing-a"], nodes["routing-b"]
    # routing-b is the busier one: the director would choose routing-a, were it not degraded.
    SessionFactory(server=b.server)
    queued = SessionFactory(server=a.server)
    api = APIClient()
    api.force_authenticate(StaffFactory())
    with tcp_proxy(a.port) as proxy:
        Server.objects.filter(pk=a.server.pk).update(base_url=f"http://127.0.0.1:{proxy.port}")
        with monitor_in_thread():
            both_up_and_beating(nodes)
            assert choose_server() == a.server
            proxy.stall()
            wait_until(lambda: Server.objects.get(pk=a.server.pk).is_degraded, timeout=10, message="routing-a degraded")
            alert = Alert.objects.get(server=a.server, kind=AlertKind.SERVER_DEGRADED, cleared_at__isnull=True)
            assert alert.severity == AlertSeverity.WARNING
            [entry] = [s for s in api.get("/api/v1/status/").json()["servers"] if s["name"] == "routing-a"]
            assert entry["health"] == "up"
            assert entry["degraded_since"] is not None
            assert choose_server() == b.server  # new callers go to the healthy server
            # Three times the policy's silence, with /healthz unanswered all along.
            stalled_until = time.monotonic() + 3 * Policy.current().server_silence_seconds
            while time.monotonic() < stalled_until:
                assert Server.objects.get(pk=a.server.pk).health == Health.UP
                time.sleep(0.2)
            proxy.unstall()
            wait_until(
                lambda: not Server.objects.get(pk=a.server.pk).is_degraded,
                timeout=DEGRADED_CLEAR_SECONDS + 5,
                message="routing-a no longer degraded",
            )
    assert failure_of(a.server) is None
    assert not Alert.objects.filter(server=a.server, cleared_at__isnull=True).exists()
    queued.refresh_from_db()
    assert queued.state == SessionState.QUEUED
    assert queued.server == a.server


# When the stopped node ran the acting monitor: its lease's time-to-live (2 s), then the
# new monitor's own silence, counted from its first reading of the heartbeats, plus 1 s.
TAKEOVER_EXTRA_S = 2.0 + 1.0


def test_a_stopped_node_that_ran_the_monitor_is_failed_once_another_node_takes_over(tmp_path):
    ports = {"routing-a": free_port(), "routing-b": free_port()}
    servers = {name: ServerFactory(name=name, base_url=f"http://127.0.0.1:{port}") for name, port in ports.items()}
    silence = Policy.current().server_silence_seconds
    processes = {}
    try:
        for name, port in ports.items():  # monitors in the nodes, as in production
            processes[name] = start_node(name, port, tmp_path / f"{name}.log")
            wait_for_node(f"http://127.0.0.1:{port}", processes[name], tmp_path / f"{name}.log")
        wait_until(
            lambda: Server.objects.filter(health=Health.UP).count() == 2 and NodeHeartbeat.objects.count() == 2,
            timeout=30,
            message="both servers up and beating",
        )
        holder = Lease.objects.get(name=LEASE_NAME).holder.split(":")[0]
        stopped_at = time.time()
        processes[holder].send_signal(signal.SIGSTOP)
        event = wait_until(lambda: failure_of(servers[holder]), timeout=30, message=f"{holder} failed")
    finally:
        for process in processes.values():
            stop_process(process)

    took = event.detected_at.timestamp() - stopped_at
    print(f"SIGSTOP of the monitor's own node -> server failed: {took:.3f} s")
    assert took <= silence + STOPPED_BOUND_EXTRA_S + TAKEOVER_EXTRA_S
    assert Lease.objects.get(name=LEASE_NAME).holder.split(":")[0] != holder
