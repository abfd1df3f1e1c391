"""Planned maintenance: draining a Collaboration Server (issue 21, point 2), in process."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from common.roles import ADMINISTRATOR
from failover.choices import AlertKind, AuditAction, FailoverKind, Health
from failover.models import Alert, AuditEntry, FailoverEvent, Server
from failover.monitor.monitor import Monitor
from failover.monitor.watchers import Transition
from failover.services.drain import server_drain, server_undrain
from failover.services.servers import server_health_changed
from sessions.choices import AgentState, EndReason, SessionState
from sessions.models import CollaborationSession
from sessions.services.director import NoHealthyServer, choose_server
from sessions.services.server_drain import sessions_end_past_drain_deadline
from tests.factories import AgentFactory, ServerFactory, SessionFactory, SkillGroupFactory, role_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_servers(db):
    drained = ServerFactory(name="routing-a", base_url="http://127.0.0.1:1")
    survivor = ServerFactory(name="routing-b", base_url="http://127.0.0.1:2")
    Server.objects.update(health=Health.UP)
    drained.refresh_from_db()
    survivor.refresh_from_db()
    return drained, survivor


def drain(server: Server, **kwargs) -> Server:
    return server_drain(server_id=server.pk, actor="test", reason="patch Tuesday", **kwargs)


def test_a_draining_server_takes_no_new_session_and_undrain_brings_it_back(two_servers):
    drained, survivor = two_servers
    drain(drained)
    assert choose_server() == survivor
    with pytest.raises(NoHealthyServer):
        choose_server(exclude_ids=[survivor.pk])
    server_undrain(server_id=drained.pk, actor="test", reason="patched")
    assert choose_server(exclude_ids=[survivor.pk]) == drained


def test_queued_sessions_move_to_a_survivor_in_order_and_active_ones_stay(two_servers):
    drained, survivor = two_servers
    SkillGroupFactory(server=survivor, icm_id="SG-SALES", name="Sales")
    sales = SkillGroupFactory(server=drained, icm_id="SG-SALES", name="Sales")
    agent = AgentFactory(server=drained, state=AgentState.READY)
    active = SessionFactory(server=drained, state=SessionState.ACTIVE, agent=agent)
    now = timezone.now()
    queued = [SessionFactory(server=drained, skill_group=sales, queued_at=now + timedelta(seconds=n)) for n in range(3)]

    drain(drained)

    moved = list(CollaborationSession.objects.filter(adopted_from=drained).order_by("queued_at"))
    assert [s.pk for s in moved] == [s.pk for s in queued]
    assert {(s.server_id, s.state, s.skill_group.server_id) for s in moved} == {
        (survivor.pk, SessionState.QUEUED, survivor.pk)
    }
    active.refresh_from_db()
    agent.refresh_from_db()
    assert (active.state, active.server_id, agent.state) == (SessionState.ACTIVE, drained.pk, AgentState.READY)
    entry = AuditEntry.objects.get(action=AuditAction.SERVER_DRAINED)
    assert (entry.reason, entry.after["queued_moved"]) == ("patch Tuesday", 3)
    assert AuditEntry.objects.filter(action=AuditAction.SESSION_ADOPTED).count() == 3


def test_a_drained_server_that_stops_is_not_a_failure(two_servers):
    drained, _ = two_servers
    agent = AgentFactory(server=drained, state=AgentState.READY)
    active = SessionFactory(server=drained, state=SessionState.ACTIVE, agent=agent)
    drain(drained)

    event = server_health_changed(server_id=drained.pk, health=Health.DOWN, at=timezone.now(), error="refused")

    assert event.kind == FailoverKind.SERVER_STOPPED
    assert "stopped while drained" in event.reason
    drained.refresh_from_db()
    active.refresh_from_db()
    agent.refresh_from_db()
    assert (drained.health, drained.failed_at) == (Health.DOWN, None)
    assert (active.state, agent.state) == (SessionState.ACTIVE, AgentState.READY)
    assert not Alert.objects.filter(kind=AlertKind.SERVER_FAILED).exists()
    assert not FailoverEvent.objects.filter(kind=FailoverKind.SERVER_FAILED).exists()
    # Back up: no "recovered" event either (it never failed).
    assert server_health_changed(server_id=drained.pk, health=Health.UP, at=timezone.now()) is None


def test_the_deadline_ends_what_is_still_open_with_server_maintenance(two_servers):
    drained, survivor = two_servers
    agent = AgentFactory(server=drained, state=AgentState.READY, max_sessions=2)
    active = SessionFactory(server=drained, state=SessionState.ACTIVE, agent=agent)
    elsewhere = SessionFactory(server=survivor, state=SessionState.ACTIVE, agent=AgentFactory(server=survivor))
    drain(drained, deadline_minutes=5)

    assert sessions_end_past_drain_deadline(now=timezone.now()) == 0
    assert sessions_end_past_drain_deadline(now=timezone.now() + timedelta(minutes=6)) == 1

    active.refresh_from_db()
    elsewhere.refresh_from_db()
    assert (active.state, active.end_reason) == (SessionState.ENDED, EndReason.SERVER_MAINTENANCE)
    assert elsewhere.state == SessionState.ACTIVE


def test_a_session_queued_on_a_draining_server_later_is_handed_on_by_the_beat(two_servers):
    drained, survivor = two_servers
    drain(drained)
    late = SessionFactory(server=drained)  # sent back to its queue after the drain, say
    sessions_end_past_drain_deadline()
    late.refresh_from_db()
    assert (late.server_id, late.state) == (survivor.pk, SessionState.QUEUED)


def test_the_database_refuses_a_drain_without_a_reason(two_servers):
    drained, _ = two_servers
    with pytest.raises(IntegrityError), transaction.atomic():
        Server.objects.filter(pk=drained.pk).update(drain_started_at=timezone.now(), drain_reason="")
    with pytest.raises(IntegrityError), transaction.atomic():
        Server.objects.filter(pk=drained.pk).update(drain_deadline=timezone.now())
    with pytest.raises(ValidationError):
        server_drain(server_id=drained.pk, actor="test", reason="  ")
    with pytest.raises(ValidationError):
        drain(drained, deadline_minutes=0)


def test_the_commands_drain_and_undrain(two_servers):
    drained, _ = two_servers
    call_command("drain_server", "routing-a", "--reason", "kernel update", "--deadline", "30")
    drained.refresh_from_db()
    assert drained.is_draining
    assert drained.drain_deadline is not None
    assert AuditEntry.objects.get(action=AuditAction.SERVER_DRAINED).actor_name == "system:command"
    call_command("undrain_server", "routing-a", "--reason", "done")
    drained.refresh_from_db()
    assert not drained.is_draining


def test_the_api_drains_and_undrains_staff_only(two_servers, client, django_user_model):
    drained, _ = two_servers
    url = reverse("api-server-drain", args=[drained.pk])
    client.force_login(django_user_model.objects.create_user("agentish", password="x"))
    assert client.post(url, {"reason": "r"}, content_type="application/json").status_code == 403
    client.force_login(role_user(ADMINISTRATOR, username="admin2"))
    assert client.post(url, {}, content_type="application/json").status_code == 400
    response = client.post(url, {"reason": "patch", "deadline_minutes": 10}, content_type="application/json")
    assert response.status_code == 200
    assert response.json()["drain_reason"] == "patch"
    status = client.get(reverse("api-status")).json()
    entry = next(s for s in status["servers"] if s["name"] == "routing-a")
    assert entry["safe_to_restart"] is True
    response = client.post(reverse("api-server-undrain", args=[drained.pk]), {"reason": "ok"}, "application/json")
    assert response.status_code == 200
    assert response.json()["drain_started_at"] is None


def test_the_console_button_drains_with_a_deadline_and_the_overview_says_when_empty(
    two_servers, client, django_user_model
):
    drained, _ = two_servers
    client.force_login(role_user(ADMINISTRATOR, username="admin3"))
    page = client.get(reverse("home")).content.decode()
    assert reverse("console-server-drain", args=[drained.pk]) in page
    url = reverse("console-server-drain", args=[drained.pk])
    client.post(url, {"on": "1", "reason": "maintenance", "deadline_minutes": "15"})
    drained.refresh_from_db()
    assert drained.is_draining
    assert drained.drain_deadline is not None
    page = client.get(reverse("home")).content.decode()
    assert "data-safe-to-restart" in page
    assert "safe to restart" in page


def test_the_agent_desktop_shows_the_drain_banner(two_servers, client):
    drained, _ = two_servers
    agent = AgentFactory(server=drained, state=AgentState.READY)
    drain(drained)
    client.force_login(agent.user)
    page = client.get(reverse("agent:state-partial")).content.decode()
    assert 'id="server-draining"' in page
    assert "patch Tuesday" in page


def test_the_console_drain_needs_staff_and_a_csrf_token(two_servers, django_user_model):
    drained, _ = two_servers
    url = reverse("console-server-drain", args=[drained.pk])
    agentish = Client()
    agentish.force_login(django_user_model.objects.create_user("plain", password="x"))
    agentish.post(url, {"on": "1", "reason": "maintenance"})
    staff = Client(enforce_csrf_checks=True)
    staff.force_login(role_user(ADMINISTRATOR, username="admin4"))
    assert staff.post(url, {"on": "1", "reason": "maintenance"}).status_code == 403
    drained.refresh_from_db()
    assert not drained.is_draining
    assert not AuditEntry.objects.filter(action=AuditAction.SERVER_DRAINED).exists()


@pytest.mark.django_db(transaction=True)
def test_a_stopping_monitor_judges_no_server_down():
    """Graceful stop's second guard: a node whose monitor is stopping (its socket may be
    closing) never writes a server down; the monitor that takes the lease judges."""
    server = ServerFactory(name="routing-a", base_url="http://127.0.0.1:1")
    Server.objects.filter(pk=server.pk).update(health=Health.UP)
    monitor = Monitor(holder="stopping-node")
    monitor.stop.set()

    asyncio.run(monitor._server_transition(Transition(server.pk, Health.DOWN, time.time(), None, "refused")))

    server.refresh_from_db()
    assert server.health == Health.UP
    assert not FailoverEvent.objects.exists()
