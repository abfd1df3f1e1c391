"""The read-only resources: lists, details, filters, refusals and no N+1 queries."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from failover.choices import AuditAction, FailoverKind, PeerKind, PeerPriority
from failover.services.audit import audit_record
from sessions.choices import SessionState
from tests.factories import (
    AgentFactory,
    AlertFactory,
    FailoverEventFactory,
    PeerFactory,
    ServerFactory,
    SessionFactory,
    SkillGroupFactory,
    peer_mark_connected,
)

pytestmark = pytest.mark.django_db

LIST_ENDPOINTS = [
    "/api/v1/servers/",
    "/api/v1/alerts/",
    "/api/v1/peers/",
    "/api/v1/links/",
    "/api/v1/agents/",
    "/api/v1/sessions/",
    "/api/v1/events/",
    "/api/v1/audit/",
]


def _populate(name: str, admin_user) -> None:
    """One server with a bit of everything every list shows."""
    server = ServerFactory(name=name)
    primary = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.PRIMARY)
    secondary = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.SECONDARY)
    peer_mark_connected(primary)
    agent = AgentFactory(user__username=f"{name}-agent", server=server)
    agent.skill_groups.add(SkillGroupFactory(server=server), SkillGroupFactory(server=server))
    SessionFactory(server=server, state=SessionState.ACTIVE, agent=agent, skill_group=agent.skill_groups.first())
    FailoverEventFactory(
        server=server, link=server.links.first(), from_peer=secondary, to_peer=primary, actor=admin_user
    )
    audit_record(actor=admin_user, action=AuditAction.LINK_SWITCHOVER, target=server.links.first(), reason="test")
    AlertFactory(server=server)


def _results(response) -> list[dict]:
    assert response.status_code == 200, response.content
    return response.json()["results"]


# --- Lists and details ---------------------------------------------------------------------


@pytest.mark.parametrize("url", LIST_ENDPOINTS)
def test_every_list_is_paginated_with_limit_and_offset(admin_api, admin_user, url):
    _populate("routing-a", admin_user)
    _populate("routing-b", admin_user)

    body = admin_api.get(url, {"limit": 1}).json()

    assert body["count"] >= 2
    assert len(body["results"]) == 1
    assert "offset=1" in body["next"]


@pytest.mark.parametrize("url", LIST_ENDPOINTS)
def test_every_list_takes_the_same_number_of_queries_for_one_server_or_five(admin_api, admin_user, url):
    _populate("server-0", admin_user)
    with CaptureQueriesContext(connection) as one_server:
        admin_api.get(url)
    for n in range(1, 5):
        _populate(f"server-{n}", admin_user)
    with CaptureQueriesContext(connection) as five_servers:
        response = admin_api.get(url)

    assert response.json()["count"] >= 5
    assert len(five_servers) == len(one_server)


@pytest.mark.parametrize(
    ("url", "model_label"),
    [
        ("/api/v1/servers/{}/", "failover.Server"),
        ("/api/v1/alerts/{}/", "failover.Alert"),
        ("/api/v1/peers/{}/", "failover.Peer"),
        ("/api/v1/links/{}/", "failover.Link"),
        ("/api/v1/agents/{}/", "collab_sessions.Agent"),
        ("/api/v1/sessions/{}/", "collab_sessions.CollaborationSession"),
        ("/api/v1/events/{}/", "failover.FailoverEvent"),
        ("/api/v1/audit/{}/", "failover.AuditEntry"),
    ],
)
def test_every_detail_answers_with_the_object(admin_api, admin_user, url, model_label):
    _populate("routing-a", admin_user)
    obj = apps.get_model(model_label).objects.first()

    response = admin_api.get(url.format(obj.pk))

    assert response.status_code == 200
    assert str(response.json()["id"]) == str(obj.pk)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/api/v1/servers/999999/", "No Server matches the given query."),
        (f"/api/v1/sessions/{uuid.uuid4()}/", "No CollaborationSession matches the given query."),
        ("/api/v1/servers/not-a-number/", "Not found."),
        ("/api/v1/sessions/not-a-uuid/", "Not found."),
    ],
)
def test_an_unknown_or_malformed_id_is_a_json_404(admin_api, url, message):
    response = admin_api.get(url)

    assert response.status_code == 404
    assert response.json() == {"detail": message}


def test_a_link_shows_its_server_and_active_peer(admin_api, server):
    primary = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.PRIMARY)
    PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.SECONDARY)
    peer_mark_connected(primary, epoch=7)

    links = {link["kind"]: link for link in _results(admin_api.get("/api/v1/links/"))}

    assert links["media_blender"]["active_peer"] == {"id": primary.id, "name": primary.name}
    assert links["media_blender"]["epoch"] == 7
    assert links["media_blender"]["server_name"] == "routing-a"
    assert links["admin_workstation"]["active_peer"] is None


def test_an_event_reports_its_detection_and_switchover_durations(admin_api, server, admin_user):
    detected = timezone.now()
    FailoverEventFactory(
        server=server,
        kind=FailoverKind.AUTOMATIC,
        failed_at=detected - timedelta(milliseconds=800),
        detected_at=detected,
        completed_at=detected + timedelta(milliseconds=250),
        actor=admin_user,
    )

    (event,) = _results(admin_api.get("/api/v1/events/"))

    assert event["detection_seconds"] == pytest.approx(0.8)
    assert event["switchover_seconds"] == pytest.approx(0.25)
    assert event["actor"] == admin_user.username
    assert event["from_peer_name"] is None


def test_an_unfinished_event_has_no_durations_yet(admin_api, server):
    FailoverEventFactory(server=server, kind=FailoverKind.LINK_DOWN)

    (event,) = _results(admin_api.get("/api/v1/events/"))

    assert event["detection_seconds"] is None
    assert event["switchover_seconds"] is None
    assert event["actor"] is None


def test_an_agent_lists_its_server_name_and_skill_groups(admin_api, agent):
    group = SkillGroupFactory(server=agent.server, name="Billing")
    agent.skill_groups.add(group)

    (entry,) = _results(admin_api.get("/api/v1/agents/"))

    assert entry["username"] == "agent"
    assert entry["server_name"] == "routing-a"
    assert entry["skill_groups"] == [{"id": group.id, "icm_id": group.icm_id, "name": "Billing"}]


# --- Filters -------------------------------------------------------------------------------


def test_sessions_filter_by_state_server_and_agent(admin_api, agent, other_agent):
    elsewhere = ServerFactory(name="routing-b")
    queued = SessionFactory(server=agent.server)
    mine = SessionFactory(server=agent.server, state=SessionState.ACTIVE, agent=agent)
    theirs = SessionFactory(server=agent.server, state=SessionState.ACTIVE, agent=other_agent)
    far = SessionFactory(server=elsewhere)

    def ids(**params: object) -> set[str]:
        return {row["id"] for row in _results(admin_api.get("/api/v1/sessions/", params))}

    assert ids(state="active") == {str(mine.id), str(theirs.id)}
    assert ids(server=elsewhere.id) == {str(far.id)}
    assert ids(agent=agent.id) == {str(mine.id)}
    assert ids(state="queued", server=agent.server.id) == {str(queued.id)}


def test_a_blank_filter_value_means_no_filter(admin_api, server):
    SessionFactory(server=server)

    assert len(_results(admin_api.get("/api/v1/sessions/", {"state": ""}))) == 1


def test_peers_filter_by_server_and_kind(admin_api, server):
    media_blender = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER)
    PeerFactory(server=server, kind=PeerKind.ADMIN_WORKSTATION)
    PeerFactory(server=ServerFactory(name="routing-b"), kind=PeerKind.MEDIA_BLENDER)

    rows = _results(admin_api.get("/api/v1/peers/", {"server": server.id, "kind": "media_blender"}))

    assert [row["id"] for row in rows] == [media_blender.id]


def test_audit_filters_by_action(admin_api, admin_user, server):
    audit_record(actor=admin_user, action=AuditAction.LINK_SWITCHOVER, target=server, reason="by hand")
    audit_record(actor="system:poller", action=AuditAction.SERVER_FAILED, target=server)

    rows = _results(admin_api.get("/api/v1/audit/", {"action": "link.switchover"}))

    assert [(row["actor_name"], row["reason"]) for row in rows] == [("user:admin", "by hand")]


@pytest.mark.parametrize(
    ("url", "params", "field", "message"),
    [
        ("/api/v1/sessions/", {"state": "bogus"}, "state", '"bogus" is not a valid choice.'),
        ("/api/v1/sessions/", {"server": "routing-a"}, "server", "A valid integer is required."),
        ("/api/v1/sessions/", {"agent": "-1"}, "agent", "Ensure this value is greater than or equal to 1."),
        ("/api/v1/peers/", {"kind": "toaster"}, "kind", '"toaster" is not a valid choice.'),
        ("/api/v1/links/", {"state": "sideways"}, "state", '"sideways" is not a valid choice.'),
        ("/api/v1/agents/", {"state": "asleep"}, "state", '"asleep" is not a valid choice.'),
        ("/api/v1/events/", {"kind": "meteor"}, "kind", '"meteor" is not a valid choice.'),
        ("/api/v1/audit/", {"action": "drop.tables"}, "action", '"drop.tables" is not a valid choice.'),
    ],
)
def test_a_bad_filter_is_a_400_that_says_what_is_wrong(admin_api, url, params, field, message):
    response = admin_api.get(url, params)

    assert response.status_code == 400
    assert response.json() == {field: [message]}


# --- An agent's own rows -------------------------------------------------------------------


def test_an_agent_sees_only_its_own_sessions(agent_api, agent, other_agent):
    mine = SessionFactory(server=agent.server, state=SessionState.ACTIVE, agent=agent)
    SessionFactory(server=agent.server, state=SessionState.ACTIVE, agent=other_agent)
    SessionFactory(server=agent.server)  # queued, nobody's yet

    rows = _results(agent_api.get("/api/v1/sessions/"))

    assert [row["id"] for row in rows] == [str(mine.id)]


def test_an_agent_cannot_widen_its_list_with_a_filter(agent_api, agent, other_agent):
    SessionFactory(server=agent.server, state=SessionState.ACTIVE, agent=other_agent)

    assert _results(agent_api.get("/api/v1/sessions/", {"agent": other_agent.id})) == []


def test_another_agents_session_is_a_404_for_an_agent(agent_api, agent, other_agent):
    theirs = SessionFactory(server=agent.server, state=SessionState.ACTIVE, agent=other_agent)
    mine = SessionFactory(server=agent.server, state=SessionState.ACTIVE, agent=agent)

    assert agent_api.get(f"/api/v1/sessions/{mine.id}/").status_code == 200
    response = agent_api.get(f"/api/v1/sessions/{theirs.id}/")
    assert response.status_code == 404
    assert response.json() == {"detail": "No CollaborationSession matches the given query."}


def test_a_malformed_session_id_is_a_404_for_an_agent(agent_api):
    response = agent_api.get("/api/v1/sessions/not-a-uuid/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")


def test_an_agent_sees_only_itself_among_agents(agent_api, agent, other_agent):
    rows = _results(agent_api.get("/api/v1/agents/"))

    assert [row["id"] for row in rows] == [agent.id]
    assert agent_api.get(f"/api/v1/agents/{other_agent.id}/").status_code == 404


def test_staff_see_every_session(admin_api, agent, other_agent):
    SessionFactory(server=agent.server, state=SessionState.ACTIVE, agent=agent)
    SessionFactory(server=agent.server, state=SessionState.ACTIVE, agent=other_agent)

    assert len(_results(admin_api.get("/api/v1/sessions/"))) == 2
    assert admin_api.get(f"/api/v1/sessions/{uuid.uuid4()}/").status_code == 404
