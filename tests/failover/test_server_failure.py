"""A Collaboration Server's failure: its work ends, its queue is adopted, the monitor moves."""

from __future__ import annotations

import signal

import pytest
from django.utils import timezone

from failover.choices import AlertKind, FailoverKind, Health, ServerRole
from failover.models import Alert, AuditEntry, FailoverEvent, Lease, Policy, Server
from failover.monitor.monitor import LEASE_NAME
from failover.services.servers import server_health_changed
from sessions.choices import AgentState, EndReason, LogoutReason, SessionState
from sessions.models import CollaborationSession
from tests.factories import AgentFactory, ServerFactory, SessionFactory, SkillGroupFactory
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


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_killing_a_node_fails_its_server_and_the_monitor_moves_to_the_survivor(tmp_path):
    policy = Policy.current()
    # A generous time-out and fall: a busy machine must not look like a failed node.
    policy.probe_interval_ms, policy.probe_timeout_ms, policy.fall = 200, 1000, 3
    policy.save()
    ports = {"routing-a": free_port(), "routing-b": free_port()}
    servers = {name: ServerFactory(name=name, base_url=f"http://127.0.0.1:{port}") for name, port in ports.items()}
    nodes = {name: start_node(name, port, tmp_path / f"{name}.log") for name, port in ports.items()}

    def logs() -> str:
        return "\n".join(f"--- {name}\n{(tmp_path / f'{name}.log').read_text()[-3000:]}" for name in nodes)

    try:
        wait_until(
            lambda: Server.objects.filter(health=Health.UP).count() == 2,
            timeout=30,
            message="both nodes up",
            diagnostics=logs,
        )
        holder = Lease.objects.get(name=LEASE_NAME).holder
        holder_name = holder.split(":")[0]
        other = ({"routing-a", "routing-b"} - {holder_name}).pop()
        agent = AgentFactory(server=servers[holder_name], state=AgentState.READY)
        queued = SessionFactory(server=servers[holder_name])

        nodes[holder_name].send_signal(signal.SIGKILL)
        nodes[holder_name].wait(timeout=5)

        wait_until(
            lambda: Lease.objects.get(name=LEASE_NAME).holder.startswith(other),
            timeout=15,
            message="the survivor's monitor took the lease",
            diagnostics=logs,
        )
        wait_until(
            lambda: Server.objects.get(name=holder_name).health == Health.DOWN,
            timeout=15,
            message="the killed node's server is down",
            diagnostics=logs,
        )
    finally:
        for node in nodes.values():
            if node.poll() is None:
                node.terminate()
                node.wait(timeout=10)

    agent.refresh_from_db()
    queued.refresh_from_db()
    assert agent.logout_reason == LogoutReason.SERVER_FAILED
    assert queued.server.name == other
    assert queued.adopted_from.name == holder_name
    assert FailoverEvent.objects.filter(server__name=holder_name, kind=FailoverKind.SERVER_FAILED).count() == 1
