"""A rolling upgrade of both routing servers behind the shipped HAProxy (issue 21, point 4),
step by step as docs/operations.md ("Rolling upgrade") tells an operator, on real processes.

The installation: routing-a and routing-b, each with its node (uvicorn, the project's ASGI
application, running the health monitor as production's nodes do) and its pair of Media
Blender simulators, a Celery worker and beat, and HAProxy running deploy/haproxy.cfg in
front of the nodes. One agent per server, logged in and ready, works through the balancer
with its own API token: it ends each of its active sessions after a short talk. Callers
keep POSTing through the balancer the whole time.

The procedure, for routing-a then routing-b: drain it (``manage.py drain_server``), wait
until the balancer has taken its node out and until it is empty (its agent ends what it
has; the drain handed its queue on), SIGTERM its node, start the node again, wait until its
server is up, undrain it (``manage.py undrain_server``) and wait until the balancer sends to
it again. The "new code" is this same code started again: what the test proves is the
procedure, which does not depend on what changed.

What must hold: no caller's request and no agent's request failed, no session was lost
(every session a caller was told about exists and was ended by its agent or is still open,
none with ``server_failed`` or ``server_maintenance``), no server was declared failed, and
no Media Blender pair switched over more than once (none should at all). The figures (how
long each step took, requests and sessions) are printed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db.models import Count

from console.selectors import is_empty, session_counts_by_server
from failover.choices import FailoverKind, Health, PeerKind, PeerPriority
from failover.models import FailoverEvent, Link, Policy, Server
from sessions.choices import AgentState, EndReason, SessionState
from sessions.models import Agent, CollaborationSession
from sessions.services.lifecycle import agent_login, agent_set_ready
from tests.deploy.test_haproxy import Callers, failed, haproxy_stats, require_haproxy, start_haproxy
from tests.factories import AgentFactory, PeerFactory, ServerFactory, api_key
from tests.faults import stack as processes
from tests.faults.invariants import pair_healthy
from tests.peering.conftest import start_peer  # noqa: F401 (the fixture)
from tests.processes import ROOT, child_database_url, free_port, http_status, project_env, redis_env, start_node
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SERVERS = ("routing-a", "routing-b")
CALLERS = 2
CALLER_PAUSE_S = 0.3  # each caller asks about three times a second
AGENT_SLOTS = 3
# How long an agent talks with a caller before ending the session: long enough that, with
# callers asking faster than the agents end, every agent's slots are full when its server
# is drained (so the drain really waits for active sessions to run to their end).
TALK_S = 2.0
# The switchovers a pair can make (a link going down and back is counted apart).
SWITCHOVERS = (FailoverKind.AUTOMATIC, FailoverKind.MANUAL, FailoverKind.MAINTENANCE, FailoverKind.FAILBACK)


@dataclass
class Installation:
    url: str
    stats_socket: Path
    ports: dict[str, int]
    nodes: dict[str, subprocess.Popen]
    tmp_path: Path

    def balancer_status(self, name: str) -> str:
        return haproxy_stats(self.stats_socket)[name]["status"]

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in sorted(self.tmp_path.glob("*.log"))
        )


@pytest.fixture
def installation(tmp_path, start_peer) -> Iterator[Installation]:  # noqa: F811 (the fixture)
    require_haproxy()
    policy = Policy.current()
    # As the other deploy tests: quick probes, generous for a busy machine.
    policy.probe_interval_ms, policy.probe_timeout_ms, policy.rise, policy.fall = 200, 1000, 2, 3
    policy.transit_timeout_seconds = 3
    policy.save()
    ports = {name: free_port() for name in SERVERS}
    peers = []
    for name, port in ports.items():
        server = ServerFactory(name=name, base_url=f"http://127.0.0.1:{port}")
        for priority, suffix in enumerate(("1", "2"), start=PeerPriority.PRIMARY):
            peer_name, peer_port = f"mb-{name[-1]}{suffix}", free_port()
            PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=priority, name=peer_name, port=peer_port)
            peers.append(start_peer("media-blender", "--name", peer_name, "--port", str(peer_port)))
    others: list[subprocess.Popen] = []
    nodes = {name: start_node(name, port, tmp_path / f"{name}.log") for name, port in ports.items()}
    try:
        others.append(processes.worker(tmp_path / "worker.log")())
        others.append(processes.beat(tmp_path / "beat.log", tmp_path / "celerybeat-schedule")())
        haproxy, front, stats_socket = start_haproxy(tmp_path, ports)
        others.append(haproxy)
        installed = Installation(f"http://127.0.0.1:{front}", stats_socket, ports, nodes, tmp_path)
        wait_until(
            lambda: (
                Server.objects.filter(health=Health.UP).count() == len(SERVERS)
                and all(pair_healthy(link) for link in Link.objects.filter(kind=PeerKind.MEDIA_BLENDER))
                and stats_socket.exists()
                and all(installed.balancer_status(name) == "UP" for name in SERVERS)
            ),
            timeout=60,
            message="both servers up, every Media Blender pair connected, both nodes UP in HAProxy",
            diagnostics=installed.logs,
        )
        yield installed
    finally:
        for process in [*others, *nodes.values()]:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@dataclass
class AgentAtWork:
    """An agent working through the balancer with its API token: it ends each of its active
    sessions once it has talked ``TALK_S`` with the caller. Every answer is kept."""

    url: str
    token: str
    answers: list[tuple[str, int | str]] = field(default_factory=list)
    ended: set[str] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int | str, dict]:
        request = urllib.request.Request(  # noqa: S310 (http to our own balancer)
            self.url + path,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                status, data = response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            status, data = error.code, {}
        except OSError as error:
            status, data = type(error).__name__, {}
        self.answers.append((f"{method} {path.split('?')[0]}", status))
        return status, data

    def run(self) -> None:
        first_seen: dict[str, float] = {}
        while not self.stop.is_set():
            status, page = self.call("GET", f"/api/v1/sessions/?state={SessionState.ACTIVE}")
            now = time.monotonic()
            for session in page.get("results", []) if status == 200 else []:
                started = first_seen.setdefault(session["id"], now)
                if now - started >= TALK_S and session["id"] not in self.ended:
                    if self.call("POST", f"/api/v1/sessions/{session['id']}/end/", {"reason": ""})[0] == 200:
                        self.ended.add(session["id"])
            self.stop.wait(0.2)  # the agent's pace, not a wait for a result


def manage(*argv: str) -> None:
    """``manage.py`` as the operator runs it, against this test's database and Redis."""
    env = project_env(DATABASE_URL=child_database_url(), **redis_env())
    done = subprocess.run(
        [sys.executable, "manage.py", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def open_sessions(server: Server) -> int:
    """Sessions in transit to or active with an agent of ``server``."""
    counts = session_counts_by_server()[server.pk]
    return counts[SessionState.ACTIVE] + counts[SessionState.IN_TRANSIT]


def session_states() -> str:
    rows = CollaborationSession.objects.values_list("server__name", "state").order_by().annotate(n=Count("pk"))
    agents = Agent.objects.values_list("icm_id", "state", "server__name")
    return f"sessions (server, state, n): {sorted(rows)}\nagents: {sorted(agents)}\n"


def upgrade(installed: Installation, name: str) -> dict[str, float]:
    """The procedure for one server; how long each step took, in seconds."""
    server = Server.objects.get(name=name)
    steps: dict[str, float] = {}

    def step(label: str) -> None:
        steps[label] = time.monotonic() - started

    # The drain must have something to wait for: its agent is with a caller.
    wait_until(
        lambda: open_sessions(server) > 0,
        timeout=30,
        message=f"{name}'s agent with a caller before the drain",
        diagnostics=lambda: session_states() + installed.logs(),
    )
    started = time.monotonic()
    # 1. Drain it: no new session, its queue handed on, /readyz 503.
    manage("drain_server", name, "--reason", "rolling upgrade")
    step("drained")
    steps["open when drained"] = open_sessions(server)
    # 2. The balancer takes its node out (no new request reaches it).
    wait_until(
        lambda: installed.balancer_status(name).startswith("DOWN"),
        timeout=15,
        message=f"HAProxy took {name}'s node out",
        diagnostics=installed.logs,
    )
    step("out of the balancer")
    # 3. Empty: the agents end what they have ("safe to restart" on the overview).
    wait_until(
        lambda: is_empty(session_counts_by_server()[server.pk]),
        timeout=60,
        message=f"{name} empty",
        diagnostics=installed.logs,
    )
    step("empty")
    # 4. Stop its node: SIGTERM, a graceful stop.
    node = installed.nodes[name]
    node.send_signal(signal.SIGTERM)
    node.wait(timeout=20)
    step("stopped")
    # 5. Start the new code (here: the same code again) and wait until its server is up.
    port = installed.ports[name]
    installed.nodes[name] = start_node(name, port, installed.tmp_path / f"{name}.log")
    wait_until(
        lambda: (
            http_status(f"http://127.0.0.1:{port}/healthz") == 200
            and Server.objects.get(pk=server.pk).health == Health.UP
        ),
        timeout=40,
        message=f"{name}'s new node answers and its server is up",
        diagnostics=installed.logs,
    )
    step("started again")
    # 6. Undrain it and wait until the balancer sends to it again, before the next server.
    manage("undrain_server", name, "--reason", "upgraded")
    wait_until(
        lambda: installed.balancer_status(name) == "UP",
        timeout=20,
        message=f"HAProxy put {name}'s node back",
        diagnostics=installed.logs,
    )
    step("back in the balancer")
    return steps


def agents_at_work(url: str) -> list[AgentAtWork]:
    agents = []
    for n, name in enumerate(SERVERS):
        server = Server.objects.get(name=name)
        agent = AgentFactory(server=server, icm_id=f"agent-{n}", user__username=f"agent-{n}", max_sessions=AGENT_SLOTS)
        agent_login(agent_id=agent.pk, actor=agent.user)
        agent_set_ready(agent_id=agent.pk, ready=True, actor=agent.user)
        agents.append(AgentAtWork(url, api_key(agent.user)))
    return agents


def test_a_rolling_upgrade_of_both_servers_loses_no_session_and_fails_no_request(installation, capsys):
    installed = installation
    script = get_user_model().objects.create_user("script", password="x" * 16, is_superuser=True)  # noqa: S106
    callers = Callers(installed.url, api_key(script), pause=CALLER_PAUSE_S)
    agents = agents_at_work(installed.url)
    threads = [threading.Thread(target=callers.run, args=(i,), daemon=True) for i in range(CALLERS)]
    threads += [threading.Thread(target=agent.run, daemon=True) for agent in agents]
    for thread in threads:
        thread.start()
    try:
        wait_until(
            lambda: all(agent.ended for agent in agents),
            timeout=60,
            message="each agent ended a session before the upgrade",
            diagnostics=installed.logs,
        )
        started = time.monotonic()
        steps = {}
        undrained_at = {}
        for name in SERVERS:
            steps[name] = upgrade(installed, name)
            undrained_at[name] = time.monotonic()
        took = time.monotonic() - started
        # Each upgraded server takes callers again, and its agent serves them.
        wait_until(
            lambda: all(
                CollaborationSession.objects.filter(server__name=name, agent__isnull=False, ended_at__isnull=False)
                .filter(end_reason=EndReason.AGENT_ENDED, state=SessionState.ENDED)
                .filter(queued_at__gte=_wall_clock_of(undrained_at[name]))
                .exists()
                for name in SERVERS
            ),
            timeout=60,
            message="each upgraded server took a caller and its agent ended that session",
            diagnostics=installed.logs,
        )
    finally:
        callers.stop.set()
        for agent in agents:
            agent.stop.set()
        for thread in threads:
            thread.join(timeout=20)

    # Zero caller requests failed, and none of the agents' requests.
    assert failed(callers.answers) == [], (failed(callers.answers), installed.logs())
    agent_failures = [answer for agent in agents for answer in agent.answers if answer[1] != 200]
    assert agent_failures == [], (agent_failures, installed.logs())
    # Zero sessions lost: each one a caller was told about exists once, and ended only by its agent.
    told = [answer[2] for answer in callers.answers if answer[1] == 201]
    assert len(told) == len(set(told))
    sessions = CollaborationSession.objects.filter(pk__in=told)
    assert sessions.count() == len(told)
    ended = sessions.filter(state=SessionState.ENDED)
    assert set(ended.values_list("end_reason", flat=True)) == {EndReason.AGENT_ENDED}
    assert not CollaborationSession.objects.filter(
        end_reason__in=(EndReason.SERVER_FAILED, EndReason.SERVER_MAINTENANCE)
    ).exists()
    # No server failed; its agents were never logged out.
    assert not FailoverEvent.objects.filter(kind=FailoverKind.SERVER_FAILED).exists()
    assert set(Agent.objects.values_list("state", flat=True)) == {AgentState.READY}
    # At most one switchover per pair (and no pair left without a connected peer).
    switchovers = {
        link.pk: FailoverEvent.objects.filter(link=link, kind__in=SWITCHOVERS).count()
        for link in Link.objects.filter(kind=PeerKind.MEDIA_BLENDER)
    }
    assert all(n <= 1 for n in switchovers.values()), switchovers
    assert not FailoverEvent.objects.filter(kind=FailoverKind.LINK_DOWN).exists()
    assert all(pair_healthy(link) for link in Link.objects.filter(kind=PeerKind.MEDIA_BLENDER))
    stopped = FailoverEvent.objects.filter(kind=FailoverKind.SERVER_STOPPED).count()

    with capsys.disabled():
        print(f"\nrolling upgrade of {len(SERVERS)} servers in {took:.1f} s behind HAProxy:")
        for name, times in steps.items():
            print(
                f"  {name}: "
                + ", ".join(
                    f"{label}: {value}" if label.startswith("open") else f"{label} at {value:.1f} s"
                    for label, value in times.items()
                )
            )
        print(
            f"  callers: {len(callers.answers)} requests, {len(failed(callers.answers))} failed; "
            f"agents: {sum(len(a.answers) for a in agents)} requests, {len(agent_failures)} failed, "
            f"{sum(len(a.ended) for a in agents)} sessions ended; sessions: {len(told)} created, "
            f"{ended.count()} ended by their agent, none lost; switchovers per pair: {sorted(switchovers.values())}; "
            f"servers stopped while drained: {stopped}, failed: 0"
        )


def _wall_clock_of(monotonic: float):
    """The database's time for a ``time.monotonic()`` reading of this process."""
    from datetime import timedelta

    from django.utils import timezone

    return timezone.now() - timedelta(seconds=time.monotonic() - monotonic)
