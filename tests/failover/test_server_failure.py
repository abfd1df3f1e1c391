"""A Collaboration Server's failure: its work ends, its queue is adopted, the monitor moves."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.utils import timezone

from failover.choices import AlertKind, FailoverKind, Health, PeerKind, ServerRole
from failover.models import Alert, AuditEntry, FailoverEvent, Lease, Policy, Server
from failover.monitor.monitor import LEASE_NAME
from failover.services.servers import server_health_changed
from sessions.choices import AgentState, EndReason, LogoutReason, SessionState
from sessions.models import CollaborationSession
from sessions.services.routes import RouteOutcome, session_route_many
from tests.factories import (
    AgentFactory,
    PeerFactory,
    ServerFactory,
    SessionFactory,
    SkillGroupFactory,
    peer_mark_connected,
)
from tests.processes import free_port, start_node
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_servers(db):
    failed = ServerFactory(name="routing-a", base_url="http://127.0.0.1:1")
    survivor = ServerFactory(name="routing-b", base_url="http://127.0.0.1:2")
    Server.objects.update(health=Health.UP)
    failed.refresh_from_db()
    survivor.refresh_from_db()
    return failed, survivor


def fail(server: Server):
    return server_health_changed(server_id=server.pk, health=Health.DOWN, at=timezone.now(), error="refused")


def test_a_failed_servers_logins_and_current_sessions_end_with_server_failed(two_servers):
    failed, survivor = two_servers
    agent = AgentFactory(server=failed, state=AgentState.READY)
    active = SessionFactory(server=failed, state=SessionState.ACTIVE, agent=agent)
    in_transit = SessionFactory(server=failed, state=SessionState.IN_TRANSIT, agent=agent)
    elsewhere = SessionFactory(server=survivor, state=SessionState.ACTIVE, agent=AgentFactory(server=survivor))

    event = fail(failed)

    agent.refresh_from_db()
    assert agent.state == AgentState.LOGGED_OUT
    assert agent.logout_reason == LogoutReason.SERVER_FAILED
    assert agent.logged_out_at is not None
    for session in (active, in_transit):
        session.refresh_from_db()
        assert session.state == SessionState.ENDED
        assert session.end_reason == EndReason.SERVER_FAILED
        assert session.ended_at == event.detected_at
    elsewhere.refresh_from_db()
    assert elsewhere.state == SessionState.ACTIVE
    assert event.kind == FailoverKind.SERVER_FAILED
    assert Alert.objects.filter(server=failed, kind=AlertKind.SERVER_FAILED, cleared_at__isnull=True).exists()
    assert AuditEntry.objects.filter(object_id=str(active.pk), reason=EndReason.SERVER_FAILED).exists()


def test_queued_sessions_are_adopted_by_a_survivor_in_their_order_and_skill_group(two_servers):
    failed, survivor = two_servers
    sales_failed = SkillGroupFactory(server=failed, icm_id="SG-SALES", name="Sales")
    sales_survivor = SkillGroupFactory(server=survivor, icm_id="SG-SALES", name="Sales")
    first = SessionFactory(server=failed, skill_group=sales_failed, queued_at=timezone.now())
    second = SessionFactory(server=failed, queued_at=timezone.now())

    fail(failed)

    adopted = list(CollaborationSession.objects.filter(adopted_from=failed).order_by("queued_at"))
    assert [s.pk for s in adopted] == [first.pk, second.pk]
    assert all(s.server == survivor and s.state == SessionState.QUEUED for s in adopted)
    assert adopted[0].skill_group == sales_survivor
    assert adopted[1].skill_group is None


def test_adoption_keeps_the_skill_group_by_icm_id_then_by_name_and_ends_what_no_survivor_serves(two_servers):
    # Issue 15, point 2: the survivor's Billing had another ICM id, and the adopted Billing
    # callers lost their skill group (then reached any agent).
    failed, survivor = two_servers
    sales = SkillGroupFactory(server=failed, icm_id="5001", name="Sales")
    billing = SkillGroupFactory(server=failed, icm_id="5003", name="Billing")
    legal = SkillGroupFactory(server=failed, icm_id="5009", name="Legal")
    sales_b = SkillGroupFactory(server=survivor, icm_id="5001", name="Sales (ICM)")  # renamed here, same ICM id
    billing_b = SkillGroupFactory(server=survivor, icm_id="5103", name="Billing")  # same name, another ICM id
    by_id = SessionFactory(server=failed, skill_group=sales, caller_name="Sam Sales")
    by_name = SessionFactory(server=failed, skill_group=billing, caller_name="Bill Billing")
    unserved = SessionFactory(server=failed, skill_group=legal, caller_name="Lee Legal")
    anyone = SessionFactory(server=failed, caller_name="Ann Any")

    event = fail(failed)

    for session in (by_id, by_name, unserved, anyone):
        session.refresh_from_db()
    assert (by_id.server, by_id.skill_group, by_id.state) == (survivor, sales_b, SessionState.QUEUED)
    assert (by_name.server, by_name.skill_group, by_name.state) == (survivor, billing_b, SessionState.QUEUED)
    assert (anyone.server, anyone.skill_group, anyone.state) == (survivor, None, SessionState.QUEUED)
    # No survivor has Legal: not adopted into "any agent", ended, and the reason says why.
    assert (unserved.server, unserved.state, unserved.end_reason) == (failed, SessionState.ENDED, "server_failed")
    assert unserved.skill_group == legal
    ended_entry = AuditEntry.objects.get(object_id=str(unserved.pk), action="session.ended")
    assert ended_entry.reason == "No surviving routing server has the skill group Legal (ICM id 5009)."
    assert unserved.end_note == ended_entry.reason
    assert "1 queued ended" in event.reason
    # The audit history says how each skill group was mapped.
    mapped = {e.object_id: e.after for e in AuditEntry.objects.filter(action="session.adopted")}
    assert mapped[str(by_id.pk)]["skill_group"] == "Sales (ICM)"
    assert mapped[str(by_id.pk)]["skill_group_matched_by"] == "icm_id"
    assert mapped[str(by_name.pk)]["skill_group"] == "Billing"
    assert mapped[str(by_name.pk)]["skill_group_matched_by"] == "name"
    assert mapped[str(anyone.pk)]["skill_group"] is None


def test_an_adopted_session_is_never_routed_to_an_agent_outside_its_skill_group(two_servers):
    failed, survivor = two_servers
    billing = SkillGroupFactory(server=failed, icm_id="5003", name="Billing")
    SkillGroupFactory(server=survivor, icm_id="5103", name="Billing")
    sales_only = AgentFactory(server=survivor, icm_id="sales-1", state=AgentState.READY, max_sessions=2)
    sales_only.skill_groups.set([SkillGroupFactory(server=survivor, icm_id="5101", name="Sales")])
    peer_mark_connected(PeerFactory(server=survivor, kind=PeerKind.MEDIA_BLENDER), epoch=1)
    queued = SessionFactory(server=failed, skill_group=billing)

    fail(failed)

    # The survivor's Media Blender offers the Sales-only agent: the database refuses it.
    outcome = session_route_many(server_id=survivor.pk, routes=[(queued.pk, "sales-1")], epoch=1)
    assert outcome == [RouteOutcome.AGENT_UNAVAILABLE]
    queued.refresh_from_db()
    assert (queued.state, queued.agent) == (SessionState.QUEUED, None)


def test_with_adoption_off_or_no_survivor_queued_sessions_end_too(two_servers):
    failed, survivor = two_servers
    queued = SessionFactory(server=failed)
    policy = Policy.current()
    policy.adopt_queued_on_server_failure = False
    policy.save()

    fail(failed)

    queued.refresh_from_db()
    assert queued.state == SessionState.ENDED
    assert queued.end_reason == EndReason.SERVER_FAILED


def test_agent_role_servers_never_adopt(two_servers):
    failed, survivor = two_servers
    Server.objects.filter(pk=survivor.pk).update(role=ServerRole.AGENT)
    queued = SessionFactory(server=failed)

    fail(failed)

    queued.refresh_from_db()
    assert queued.state == SessionState.ENDED


def test_a_recovered_server_gets_an_event_and_its_alert_is_cleared(two_servers):
    failed, _ = two_servers
    fail(failed)

    event = server_health_changed(server_id=failed.pk, health=Health.UP, at=timezone.now())

    assert event.kind == FailoverKind.SERVER_RECOVERED
    failed.refresh_from_db()
    assert failed.failed_at is None
    assert not Alert.objects.filter(server=failed, cleared_at__isnull=True).exists()
    assert fail(failed).kind == FailoverKind.SERVER_FAILED
    assert fail(failed) is None  # a repeated report changes nothing


@contextmanager
def two_nodes(tmp_path: Path) -> Iterator[NodePair]:
    """routing-a and routing-b, each a real node process (uvicorn, monitor on), both up."""
    policy = Policy.current()
    # A generous time-out and fall: a busy machine must not look like a failed node.
    policy.probe_interval_ms, policy.probe_timeout_ms, policy.fall = 200, 1000, 3
    policy.save()
    ports = {"routing-a": free_port(), "routing-b": free_port()}
    servers = {name: ServerFactory(name=name, base_url=f"http://127.0.0.1:{port}") for name, port in ports.items()}
    pair = NodePair(servers, {name: start_node(name, port, tmp_path / f"{name}.log") for name, port in ports.items()})
    pair.logs = lambda: "\n".join(
        f"--- {name}\n{(tmp_path / f'{name}.log').read_text()[-3000:]}" for name in pair.processes
    )
    try:
        wait_until(
            lambda: Server.objects.filter(health=Health.UP).count() == 2,
            timeout=30,
            message="both nodes up",
            diagnostics=pair.logs,
        )
        yield pair
    finally:
        # Killed, not terminated: SIGTERM of an undrained node is a planned stop the other
        # node's monitor would still judge a failure (ending the sessions the test reads
        # afterwards). Drain first for a stop that ends nothing (test_graceful_stop.py).
        pair.stop_all()


@dataclass
class NodePair:
    servers: dict[str, Server]
    processes: dict[str, subprocess.Popen]
    logs: Callable[[], str] = str

    def monitor_holder(self) -> tuple[str, str]:
        """(the server whose node holds the monitor's lease, the other one)."""
        holder = Lease.objects.get(name=LEASE_NAME).holder.split(":")[0]
        return holder, ({"routing-a", "routing-b"} - {holder}).pop()

    def stop_all(self) -> None:
        """SIGKILL every node still running: once the failure under test has been handled,
        no monitor is left to change what the test reads next (on a saturated machine a
        survivor's own monitor could otherwise time out on itself)."""
        for node in self.processes.values():
            if node.poll() is None:
                node.kill()
                node.wait(timeout=10)

    def kill(self, name: str) -> None:
        """SIGKILL the node, then wait until the other node's monitor has failed its server."""
        other = ({"routing-a", "routing-b"} - {name}).pop()
        self.processes[name].send_signal(signal.SIGKILL)
        self.processes[name].wait(timeout=5)
        wait_until(
            lambda: Lease.objects.get(name=LEASE_NAME).holder.startswith(other),
            timeout=15,
            message="the survivor's monitor took the lease",
            diagnostics=self.logs,
        )
        wait_until(
            lambda: Server.objects.get(name=name).health == Health.DOWN,
            timeout=15,
            message="the killed node's server is down",
            diagnostics=self.logs,
        )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_killing_a_node_fails_its_server_and_the_monitor_moves_to_the_survivor(tmp_path):
    with two_nodes(tmp_path) as nodes:
        holder_name, other = nodes.monitor_holder()
        agent = AgentFactory(server=nodes.servers[holder_name], state=AgentState.READY)
        queued = SessionFactory(server=nodes.servers[holder_name])

        nodes.kill(holder_name)

    agent.refresh_from_db()
    queued.refresh_from_db()
    assert agent.logout_reason == LogoutReason.SERVER_FAILED
    assert queued.server.name == other
    assert queued.adopted_from.name == holder_name
    assert FailoverEvent.objects.filter(server__name=holder_name, kind=FailoverKind.SERVER_FAILED).count() == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_billing_callers_moved_off_a_killed_node_stay_billing_callers(tmp_path):
    """Issue 15, point 2, as it was found: Billing callers queued on one server, its node
    killed; on the survivor (whose Billing has another ICM id) they keep Billing, the
    survivor's Sales-only agent cannot take them, and a group no survivor has ends."""
    with two_nodes(tmp_path) as nodes:
        holder_name, other = nodes.monitor_holder()
        failed, survivor = nodes.servers[holder_name], nodes.servers[other]
        billing = SkillGroupFactory(server=failed, icm_id="5003", name="Billing")
        legal = SkillGroupFactory(server=failed, icm_id="5009", name="Legal")
        survivor_billing = SkillGroupFactory(server=survivor, icm_id="5103", name="Billing")
        sales_only = AgentFactory(server=survivor, icm_id="1007", state=AgentState.READY, max_sessions=2)
        sales_only.skill_groups.set([SkillGroupFactory(server=survivor, icm_id="5101", name="Sales")])
        callers = [SessionFactory(server=failed, skill_group=billing, caller_name=f"Billing {n}") for n in range(3)]
        lawyer = SessionFactory(server=failed, skill_group=legal, caller_name="Legal 1")

        nodes.kill(holder_name)
        nodes.stop_all()

    moved = list(CollaborationSession.objects.filter(pk__in=[c.pk for c in callers]))
    assert {(s.server_id, s.skill_group_id, s.state) for s in moved} == {
        (survivor.pk, survivor_billing.pk, SessionState.QUEUED)
    }
    peer_mark_connected(PeerFactory(server=survivor, kind=PeerKind.MEDIA_BLENDER), epoch=7)
    outcomes = session_route_many(server_id=survivor.pk, routes=[(c.pk, "1007") for c in callers], epoch=7)
    assert outcomes == [RouteOutcome.AGENT_UNAVAILABLE] * 3
    lawyer.refresh_from_db()
    assert (lawyer.state, lawyer.end_reason, lawyer.server) == (SessionState.ENDED, "server_failed", failed)
    assert "Legal" in AuditEntry.objects.get(object_id=str(lawyer.pk), action="session.ended").reason
