"""Incident reports (issue 19, point 5): each failure's page and API object tell what
happened, which sessions were open at that moment and what became of each, the alerts
raised and the administrators' actions that followed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from common import roles
from console.incidents import admin_actions
from failover.choices import AlertKind, FailoverKind, Health, NotificationKind
from failover.models import Alert, FailoverEvent, NotificationChannel, Server
from failover.monitor.runner import monitor_in_thread
from failover.services.alert_actions import alert_acknowledge
from failover.services.servers import server_health_changed
from failover.services.switchover import link_switchover
from sessions.choices import AgentState, EndReason, SessionState
from sessions.models import IncidentSession
from sessions.services.lifecycle import session_end
from tests.factories import (
    AgentFactory,
    AuditEntryFactory,
    FailoverEventFactory,
    ServerFactory,
    SessionFactory,
    SkillGroupFactory,
    UserFactory,
    role_user,
)
from tests.failover.test_monitor_with_simulators import (  # noqa: F401  (fixtures)
    both_up_and_one_connected,
    connected_name,
    fast_policy,
    simulated_pair,
)
from tests.peering.conftest import start_peer  # noqa: F401  (fixture)
from tests.waiting import wait_until


@pytest.fixture
def two_servers(db):
    failed = ServerFactory(name="routing-a", base_url="http://127.0.0.1:1")
    survivor = ServerFactory(name="routing-b", base_url="http://127.0.0.1:2")
    Server.objects.update(health=Health.UP)
    failed.refresh_from_db()
    survivor.refresh_from_db()
    return failed, survivor


def open_work(failed: Server) -> dict:
    """An active and an in-transit session with an agent, a queued caller any agent may take
    (a survivor adopts it) and one of a skill group no survivor has (it ends)."""
    agent = AgentFactory(server=failed, state=AgentState.READY, user__first_name="Maria", user__last_name="Lopez")
    lonely = SkillGroupFactory(server=failed, name="Lonely", icm_id="5999")
    return {
        "active": SessionFactory(server=failed, state=SessionState.ACTIVE, agent=agent, caller_name="Ada"),
        "in_transit": SessionFactory(server=failed, state=SessionState.IN_TRANSIT, agent=agent, caller_name="Grace"),
        "adopted": SessionFactory(server=failed, caller_name="Barbara"),
        "unserved": SessionFactory(server=failed, skill_group=lonely, any_skill_group=False, caller_name="Hedy"),
    }


@pytest.mark.django_db
def test_a_server_failure_records_its_open_sessions_and_the_report_says_what_became_of_each(
    two_servers, admin_client, admin_user
):
    failed, survivor = two_servers
    work = open_work(failed)
    # Nothing listens there: the delivery is recorded and stays pending (retried).
    NotificationChannel.objects.create(name="ops hook", kind=NotificationKind.WEBHOOK, url="http://127.0.0.1:9/")
    ended_before = SessionFactory(
        server=failed, state=SessionState.ENDED, end_reason=EndReason.CALLER_LEFT, ended_at=timezone.now()
    )

    event = server_health_changed(server_id=failed.pk, health=Health.DOWN, at=timezone.now(), error="refused")

    assert event.failure
    assert event.kind == FailoverKind.SERVER_FAILED
    snapshot = {row.session_id: row for row in IncidentSession.objects.filter(event=event)}
    assert set(snapshot) == {session.pk for session in work.values()}  # not the one ended before
    assert ended_before.pk not in snapshot
    assert snapshot[work["active"].pk].state == SessionState.ACTIVE
    assert snapshot[work["active"].pk].agent_name == "Maria Lopez"
    assert snapshot[work["in_transit"].pk].state == SessionState.IN_TRANSIT
    assert snapshot[work["adopted"].pk].state == SessionState.QUEUED
    # What an administrator does next is part of the story.
    alert = Alert.objects.get(server=failed, kind=AlertKind.SERVER_FAILED)
    alert_acknowledge(alert_id=alert.pk, actor=admin_user, note="Restarting the node")

    api = admin_client.get(reverse("api-incident-detail", args=[event.pk])).json()

    fates = {row["caller_name"]: row for row in api["sessions"]}
    assert {name: (row["state_at_incident"], row["outcome"]) for name, row in fates.items()} == {
        "Ada": ("active", "ended"),
        "Grace": ("in_transit", "ended"),
        "Barbara": ("queued", "rerouted"),
        "Hedy": ("queued", "ended"),
    }
    assert fates["Ada"]["end_reason"] == EndReason.SERVER_FAILED
    assert fates["Barbara"]["server"] == "routing-b"
    assert "adopted by routing-b" in fates["Barbara"]["outcome_detail"]
    assert "No surviving routing server has the skill group Lonely" in fates["Hedy"]["outcome_detail"]
    assert api["incident"]["detected_at"]
    assert api["incident"]["completed_at"]
    assert [a["kind"] for a in api["alerts"]] == [AlertKind.SERVER_FAILED]
    assert [(n["channel_name"], n["event"]) for n in api["notifications"]] == [("ops hook", "raised")]
    assert [a["action"] for a in api["admin_actions"]] == ["alert.acknowledged"]
    assert api["admin_actions"][0]["reason"] == "Restarting the node"

    page = admin_client.get(reverse("console-incident", args=[event.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    for text in (
        "Ada",
        "Grace",
        "Barbara",
        "Hedy",
        "Server failed",
        "adopted by routing-b",
        "Restarting the node",
        "ops hook",
    ):
        assert text in html, text
    assert 'data-state="queued" data-outcome="rerouted"' in html
    assert f'id="incident-session-{ended_before.pk}"' not in html


@pytest.mark.django_db
def test_the_window_of_admin_actions_ends_at_the_resolution(two_servers, admin_user, admin_client):
    failed, _ = two_servers
    event = server_health_changed(server_id=failed.pk, health=Health.DOWN, at=timezone.now(), error="refused")
    alert = Alert.objects.get(server=failed, kind=AlertKind.SERVER_FAILED)
    server_health_changed(server_id=failed.pk, health=Health.UP, at=timezone.now())
    # After the recovery: not this incident's follow-up (the alert is cleared anyway).
    Alert.objects.filter(pk=alert.pk).update(cleared_at=None)
    alert_acknowledge(alert_id=alert.pk, actor=admin_user, note="Too late for the report")

    api = admin_client.get(reverse("api-incident-detail", args=[event.pk])).json()

    assert api["resolved_at"] is not None
    assert api["admin_actions"] == []
    assert api["sessions"] == []


@pytest.mark.django_db
def test_manual_switchovers_are_not_incidents_and_have_no_page(mb_pair, admin_user, admin_client):
    link, _, secondary = mb_pair
    result = link_switchover(link_id=link.pk, actor=admin_user, reason="Patching mb-1")

    assert result.event is not None
    assert not result.event.failure
    assert admin_client.get(reverse("console-incident", args=[result.event.pk])).status_code == 404
    assert admin_client.get(reverse("api-incident-detail", args=[result.event.pk])).status_code == 404
    assert admin_client.get(reverse("api-incident-list")).json()["results"] == []


@pytest.mark.django_db
def test_the_incidents_page_lists_failures_newest_first_and_filters_by_server(two_servers, mb_pair, admin_client):
    failed, survivor = two_servers
    first = server_health_changed(server_id=failed.pk, health=Health.DOWN, at=timezone.now(), error="refused")
    second = server_health_changed(server_id=survivor.pk, health=Health.DOWN, at=timezone.now(), error="refused")
    link, _, _ = mb_pair
    manual = link_switchover(link_id=link.pk, actor="system:test", reason="Patching mb-1").event

    html = admin_client.get(reverse("console-incidents")).content.decode()
    rows = [f'id="incident-{event.pk}"' for event in (second, first)]
    assert all(row in html for row in rows)
    assert html.index(rows[0]) < html.index(rows[1])  # newest first
    assert f'id="incident-{manual.pk}"' not in html  # a manual switch-over is no incident
    assert f'href="{reverse("console-incident", args=[first.pk])}"' in html

    only_a = admin_client.get(reverse("console-incidents"), {"server": failed.pk}).content.decode()
    assert f'id="incident-{first.pk}"' in only_a
    assert f'id="incident-{second.pk}"' not in only_a


@pytest.mark.django_db
def test_the_incident_is_reached_from_the_overview_and_timeline_events_and_alerts(two_servers, admin_client):
    failed, _ = two_servers
    event = server_health_changed(server_id=failed.pk, health=Health.DOWN, at=timezone.now(), error="refused")
    link = reverse("console-incident", args=[event.pk])

    overview = admin_client.get(reverse("home")).content.decode()
    timeline = admin_client.get(reverse("console-timeline")).content.decode()

    # Once on the event's row and once on the open "server failed" alert.
    assert overview.count(f'href="{link}"') == 2
    assert timeline.count(f'href="{link}"') == 1


@pytest.mark.django_db
def test_incidents_are_staff_only(two_servers, agent_client, anonymous_client):
    failed, _ = two_servers
    event = server_health_changed(server_id=failed.pk, health=Health.DOWN, at=timezone.now(), error="refused")

    assert agent_client.get(reverse("api-incident-detail", args=[event.pk])).status_code == 403
    assert agent_client.get(reverse("console-incident", args=[event.pk])).status_code == 403
    assert anonymous_client.get(reverse("console-incident", args=[event.pk])).status_code == 302
    assert agent_client.get(reverse("console-incidents")).status_code == 403
    assert anonymous_client.get(reverse("console-incidents")).status_code == 302


@pytest.mark.django_db
def test_the_incident_list_filters_by_date_range_and_refuses_a_bad_one(two_servers, admin_client):
    failed, _ = two_servers
    event = server_health_changed(server_id=failed.pk, health=Health.DOWN, at=timezone.now(), error="refused")
    today = event.detected_at.date().isoformat()

    listed = admin_client.get(reverse("api-incident-list"), {"from": today, "to": today}).json()
    before = admin_client.get(reverse("api-incident-list"), {"to": "2001-01-01"}).json()
    bad = admin_client.get(reverse("api-incident-list"), {"from": "yesterday"})

    assert [row["id"] for row in listed["results"]] == [event.pk]
    assert before["results"] == []
    assert bad.status_code == 400
    assert "from" in bad.json()


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_killed_media_blender_makes_an_incident_with_the_sessions_open_at_that_moment(
    simulated_pair,  # noqa: F811
    admin_user,
    admin_client,
):
    """A real simulator process killed under the monitor: the automatic switch-over is an
    incident, and its report lists the sessions open then and what became of them."""
    link, processes = simulated_pair
    server = link.server
    Server.objects.filter(pk=server.pk).update(health=Health.UP)
    with monitor_in_thread():
        active_peer, standby = both_up_and_one_connected(link)
        link.refresh_from_db()
        agent = AgentFactory(server=server, state=AgentState.NOT_READY)  # takes no new work
        active = SessionFactory(
            server=server, state=SessionState.ACTIVE, agent=agent, route_epoch=link.epoch, caller_name="Ada"
        )
        queued = SessionFactory(server=server, caller_name="Hedy")

        processes[active_peer].kill()

        wait_until(lambda: connected_name(link) == standby, timeout=5, message="switch to the standby")
    event = FailoverEvent.objects.get(link=link, kind=FailoverKind.AUTOMATIC)
    assert event.failure
    # After the switch-over an administrator ends the active session.
    session_end(session_id=active.pk, actor=admin_user, reason=EndReason.ADMIN_ENDED, note="Caller asked by phone")

    report = admin_client.get(reverse("api-incident-detail", args=[event.pk])).json()

    fates = {row["caller_name"]: row for row in report["sessions"]}
    assert fates["Ada"]["state_at_incident"] == "active"
    assert (fates["Ada"]["outcome"], fates["Ada"]["end_reason"]) == ("ended", EndReason.ADMIN_ENDED)
    assert fates["Hedy"]["state_at_incident"] == "queued"
    assert fates["Hedy"]["outcome"] == "kept"  # still on its server: the queue survives a switch-over
    assert report["incident"]["from_peer_name"] == active_peer
    assert report["incident"]["to_peer_name"] == standby
    assert [a["action"] for a in report["admin_actions"]] == ["session.ended"]
    page = admin_client.get(reverse("console-incident", args=[event.pk])).content.decode()
    assert "Caller asked by phone" in page
    assert "Ada" in page
    assert "Hedy" in page
    assert queued.pk in set(IncidentSession.objects.filter(event=event).values_list("session_id", flat=True))


def test_admin_actions_are_those_of_role_holders_superusers_and_commands(server) -> None:
    """Roles, not is_staff, make an administrator (issue 22): an agent's or a script's
    account acting on the server is not an administrator's action."""
    event = FailoverEventFactory(server=server, detected_at=timezone.now() - timedelta(minutes=5))
    actors = {
        "supervisor": role_user(roles.SUPERVISOR, username="sup"),
        "superuser": UserFactory(username="root", is_superuser=True),
        "script": UserFactory(username="script"),
        "staff-without-role": UserFactory(username="legacy", is_staff=True),
    }
    for name, actor in actors.items():
        AuditEntryFactory(
            actor=actor, actor_name=f"user:{name}", object_type="failover.server", object_id=str(server.pk)
        )

    found = admin_actions(event, until=timezone.now() + timedelta(minutes=1))

    assert sorted(entry.actor_name for entry in found) == ["user:superuser", "user:supervisor"]
