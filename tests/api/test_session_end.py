"""POST /api/v1/sessions/{id}/end/: an agent ends its own sessions (others are a 404); an
administrator ends any session and must say why; ending an ended session is a 409."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from django.utils import timezone

from common import live
from failover.choices import AuditAction
from failover.models import AuditEntry
from sessions.choices import AgentState, EndReason, PhoneLeg, SessionState
from sessions.models import CollaborationSession
from tests.factories import AgentFactory, SessionFactory

pytestmark = pytest.mark.django_db


def url(session_id: object) -> str:
    return f"/api/v1/sessions/{session_id}/end/"


def active_session(agent, **fields: object) -> CollaborationSession:
    now = timezone.now()
    return SessionFactory(
        server=agent.server,
        agent=agent,
        state=SessionState.ACTIVE,
        routed_at=now,
        activated_at=now,
        route_epoch=1,
        phone_leg=PhoneLeg.CONNECTED,
        **fields,
    )


@pytest.fixture
def own(agent) -> CollaborationSession:
    return active_session(agent, caller_name="Ada Lovelace")


@pytest.fixture
def foreign(other_agent) -> CollaborationSession:
    return active_session(other_agent, caller_name="Grace Hopper")


def end(client, session_id: object, **body: object):
    return client.post(url(session_id), body, format="json")


def assert_still_open(session: CollaborationSession) -> None:
    session.refresh_from_db()
    assert session.state == SessionState.ACTIVE
    assert not AuditEntry.objects.filter(action=AuditAction.SESSION_ENDED).exists()


# --- An agent, its own sessions --------------------------------------------------------------------


def test_an_agent_ends_its_own_session_without_giving_a_reason(agent_api, own):
    response = end(agent_api, own.pk)

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["id"], body["state"], body["end_reason"], body["ended_by"]) == (
        str(own.pk),
        "ended",
        "agent_ended",
        "agent",
    )
    assert body["ended_at"].endswith("Z")
    audit = AuditEntry.objects.get(action=AuditAction.SESSION_ENDED)
    assert (audit.actor_name, audit.object_id, audit.reason) == ("user:agent", str(own.pk), "agent_ended")


def test_an_agents_reason_is_kept_in_the_audit_history(agent_api, own):
    end(agent_api, own.pk, reason="Caller's question answered")

    assert AuditEntry.objects.get(action=AuditAction.SESSION_ENDED).reason == "Caller's question answered"


def test_an_agent_cannot_end_another_agents_session_it_is_a_404(agent_api, foreign):
    response = end(agent_api, foreign.pk, reason="Not mine")

    assert response.status_code == 404
    assert response.json() == {"detail": "No CollaborationSession matches the given query."}
    assert_still_open(foreign)


def test_an_agent_cannot_end_a_queued_session_that_has_no_agent(agent_api, server):
    queued = SessionFactory(server=server)

    assert end(agent_api, queued.pk).status_code == 404
    queued.refresh_from_db()
    assert queued.state == SessionState.QUEUED


# --- An administrator, any session, with a reason ----------------------------------------------------


def test_an_administrator_ends_any_session_with_a_reason(admin_api, foreign):
    response = end(admin_api, foreign.pk, reason="Caller reported abuse")

    assert response.status_code == 200, response.content
    assert (response.json()["end_reason"], response.json()["ended_by"]) == ("admin_ended", "admin")
    audit = AuditEntry.objects.get(action=AuditAction.SESSION_ENDED)
    assert (audit.actor_name, audit.reason, audit.after) == (
        "user:admin",
        "Caller reported abuse",
        {"state": "ended", "end_reason": "admin_ended"},
    )


def test_an_administrator_may_end_a_queued_session(admin_api, server):
    queued = SessionFactory(server=server)

    response = end(admin_api, queued.pk, reason="Duplicate request")

    assert response.status_code == 200
    assert response.json()["state"] == "ended"


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "   "}])
def test_an_administrator_must_say_why(admin_api, foreign, body):
    response = admin_api.post(url(foreign.pk), body, format="json")

    assert response.status_code == 400
    assert response.json() == {"reason": ["Say why you end another agent's session."]}
    assert_still_open(foreign)


def test_a_reason_longer_than_the_audit_history_keeps_is_a_400(admin_api, foreign):
    response = end(admin_api, foreign.pk, reason="x" * 301)

    assert response.status_code == 400
    assert "reason" in response.json()
    assert_still_open(foreign)


def test_an_administrator_who_is_the_sessions_agent_ends_it_as_the_agent(admin_user, admin_api, server):
    own_as_admin = active_session(AgentFactory(user=admin_user, server=server, state=AgentState.READY))

    response = end(admin_api, own_as_admin.pk)

    assert response.status_code == 200
    assert response.json()["end_reason"] == "agent_ended"


# --- State and identity errors ------------------------------------------------------------------------


def test_ending_an_ended_session_is_a_409(agent_api, own):
    end(agent_api, own.pk)

    response = end(agent_api, own.pk)

    assert response.status_code == 409
    assert response.json() == {"detail": "A session that is ended cannot become ended."}
    own.refresh_from_db()
    assert own.end_reason == EndReason.AGENT_ENDED
    assert AuditEntry.objects.filter(action=AuditAction.SESSION_ENDED).count() == 1


@pytest.mark.parametrize("session_id", [uuid.uuid4(), "not-a-uuid", "12345"])
def test_an_unknown_or_malformed_id_is_a_json_404(admin_api, session_id):
    response = end(admin_api, session_id, reason="Clean-up")

    assert response.status_code == 404
    assert "detail" in response.json()


def test_a_user_who_is_neither_staff_nor_agent_is_refused(visitor_api, own):
    assert end(visitor_api, own.pk, reason="Let me").status_code == 403
    assert_still_open(own)


def test_an_anonymous_request_is_refused(anonymous_api, own):
    assert end(anonymous_api, own.pk, reason="Let me").status_code in (401, 403)
    assert_still_open(own)


def test_a_browser_session_needs_the_csrf_token(agent, own):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(agent.user)

    response = browser.post(url(own.pk), {}, content_type="application/json")

    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert_still_open(own)


def test_the_end_is_pushed_live_to_administrators_and_to_the_agent(
    agent, agent_api, own, live_events, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        end(agent_api, own.pk)

    (event,) = [e for e in live_events if e["type"] == "session.changed"]
    assert (event["data"]["id"], event["data"]["state"]) == (str(own.pk), "ended")
    # The administrators' pages that show sessions listen to the session topic's group.
    assert set(event["groups"]) == {live.SESSIONS_GROUP, live.agent_group(agent.pk)}
