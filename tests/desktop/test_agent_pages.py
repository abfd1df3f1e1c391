"""The Agent desktop's pages: log-in and log-out, ready / not ready, own sessions only,
join and end, access rules and CSRF on every form."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from failover.choices import AuditAction
from failover.models import AuditEntry
from sessions.choices import AgentState, EndReason, LogoutReason, PhoneLeg, SessionState
from sessions.models import CollaborationSession
from tests.desktop.conftest import logged_in, routed_session
from tests.factories import PASSWORD, AgentFactory, UserFactory

pytestmark = pytest.mark.django_db

DESKTOP = "/agent/"
LOGIN = "/agent/login/"
LOGOUT = "/agent/logout/"
STATE = "/agent/state/"
SESSIONS_PARTIAL = "/agent/partials/sessions/"
STATE_PARTIAL = "/agent/partials/state/"
DESK_PARTIAL = "/agent/partials/desk/"  # both, for the desktop's snapshot and resync


def session_url(session, suffix: str = "") -> str:
    return f"/agent/sessions/{session.pk}/{suffix}"


def partial_url(session) -> str:
    return f"/agent/partials/sessions/{session.pk}/"


def text(response) -> str:
    return response.content.decode()


# --- Log-in and log-out ---------------------------------------------------------------------


def test_an_agent_who_logs_in_is_logged_in_to_the_contact_centre_as_not_ready(agent):
    response = Client().post(LOGIN, {"username": "agent", "password": PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == DESKTOP
    agent.refresh_from_db()
    assert agent.state == AgentState.NOT_READY
    assert agent.logged_in_at is not None
    audit = AuditEntry.objects.get(action=AuditAction.AGENT_STATE)
    assert (audit.actor_name, audit.before, audit.after) == (
        "user:agent",
        {"state": "logged_out"},
        {"state": "not_ready"},
    )


def test_the_log_in_returns_to_the_page_the_agent_asked_for(agent, own_session):
    response = Client().post(f"{LOGIN}?next={session_url(own_session)}", {"username": "agent", "password": PASSWORD})

    assert response["Location"] == session_url(own_session)


def test_a_user_without_an_agent_is_refused_at_log_in_with_a_clear_message(db):
    UserFactory(username="visitor")
    client = Client()

    response = client.post(LOGIN, {"username": "visitor", "password": PASSWORD})

    assert response.status_code == 200
    assert "not an enabled agent" in text(response)
    assert "_auth_user_id" not in client.session


def test_a_disabled_agent_is_refused_at_log_in_and_stays_logged_out(server):
    agent = AgentFactory(user__username="retired", server=server, enabled=False)
    client = Client()

    response = client.post(LOGIN, {"username": "retired", "password": PASSWORD})

    assert "not an enabled agent" in text(response)
    assert "_auth_user_id" not in client.session
    agent.refresh_from_db()
    assert agent.state == AgentState.LOGGED_OUT


def test_a_wrong_password_is_refused_without_touching_the_agent(agent):
    response = Client().post(LOGIN, {"username": "agent", "password": "wrong"})

    assert response.status_code == 200
    assert "enter a correct username and password" in text(response)
    agent.refresh_from_db()
    assert agent.state == AgentState.LOGGED_OUT


def test_logging_out_logs_the_agent_out_of_the_contact_centre_and_leaves_its_sessions_open(
    agent_client, logged_in_agent, own_session
):
    response = agent_client.post(LOGOUT)

    assert response.status_code == 302
    assert response["Location"] == LOGIN
    logged_in_agent.refresh_from_db()
    assert (logged_in_agent.state, logged_in_agent.logout_reason) == (AgentState.LOGGED_OUT, LogoutReason.AGENT)
    own_session.refresh_from_db()
    assert own_session.state == SessionState.ACTIVE
    assert agent_client.get(DESKTOP)["Location"].startswith(LOGIN)


def test_log_out_is_post_only(agent_client, logged_in_agent):
    assert agent_client.get(LOGOUT).status_code == 405


# --- Who may open the desktop ----------------------------------------------------------------


@pytest.mark.parametrize("path", [DESKTOP, SESSIONS_PARTIAL, STATE_PARTIAL, DESK_PARTIAL])
def test_an_anonymous_visitor_is_sent_to_the_agent_log_in_page(anonymous_client, path):
    response = anonymous_client.get(path)

    assert response.status_code == 302
    assert response["Location"] == f"{LOGIN}?next={path}"


@pytest.mark.parametrize("path", [DESKTOP, SESSIONS_PARTIAL, STATE_PARTIAL, DESK_PARTIAL])
def test_staff_without_an_agent_is_refused_with_403(admin_client, path):
    response = admin_client.get(path)

    assert response.status_code == 403
    assert "not an agent" in text(response)


def test_staff_without_an_agent_cannot_end_a_session_from_the_desktop(admin_client, own_session):
    assert admin_client.post(session_url(own_session, "end/")).status_code == 403
    own_session.refresh_from_db()
    assert own_session.state == SessionState.ACTIVE


def test_a_disabled_agent_is_refused_with_403(server):
    agent = AgentFactory(server=server, enabled=False)
    client = Client()
    client.force_login(agent.user)

    assert client.get(DESKTOP).status_code == 403


# --- What the desktop shows ---------------------------------------------------------------------


def test_the_desktop_shows_the_agents_own_open_sessions_only(
    agent_client, logged_in_agent, own_session, foreign_session
):
    old = routed_session(logged_in_agent, caller_name="Old Caller")
    CollaborationSession.objects.filter(pk=old.pk).update(
        state=SessionState.ENDED, end_reason=EndReason.AGENT_ENDED, ended_at=old.queued_at
    )

    for path in (DESKTOP, SESSIONS_PARTIAL):
        page = text(agent_client.get(path))
        assert "Ada Lovelace" in page
        assert "Billing question" in page
        assert "Grace Hopper" not in page
        # Not among the open ones; it may be listed as recently ended (test_session_endings.py).
        assert f'id="session-{old.pk}"' not in page


def test_the_partial_is_the_same_fragment_the_desktop_includes(agent_client, own_session):
    partial = text(agent_client.get(SESSIONS_PARTIAL))
    desktop = text(agent_client.get(DESKTOP))

    # The CSRF tokens differ per render; everything else of the fragment is the same.
    first_line = partial.strip().splitlines()[0].strip()
    assert first_line in desktop
    assert f'id="session-{own_session.pk}"' in desktop
    assert f'id="session-{own_session.pk}"' in partial


def test_the_desk_partial_holds_both_fragments_the_desktop_includes_each_in_its_part(
    agent_client, own_session, foreign_session
):
    desk = text(agent_client.get(DESK_PARTIAL))
    desktop = text(agent_client.get(DESKTOP))

    state_part, sessions_part = desk.split('data-live-part="sessions"')
    assert 'data-live-part="state"' in state_part
    assert 'name="ready" value="1"' in state_part
    assert f'id="session-{own_session.pk}"' in sessions_part
    assert f'id="session-{foreign_session.pk}"' not in desk
    # The page names the combined answer and each region's part of it (static/agent/desktop.js).
    assert f'data-live-all="{DESK_PARTIAL}"' in desktop
    assert f'data-live-partial="{STATE_PARTIAL}" data-live-part="state"' in desktop
    assert f'data-live-partial="{SESSIONS_PARTIAL}" data-live-part="sessions"' in desktop


def test_the_desk_partial_costs_fewer_queries_than_its_two_fragments_apart(agent_client, logged_in_agent):
    def queries(path: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert agent_client.get(path).status_code == 200
        return len(captured)

    routed_session(logged_in_agent)
    one = queries(DESK_PARTIAL)
    for _ in range(9):
        routed_session(logged_in_agent)

    assert queries(DESK_PARTIAL) == one
    assert one < queries(SESSIONS_PARTIAL) + queries(STATE_PARTIAL)


def test_the_desktop_shows_the_agents_state_with_ready_and_not_ready_buttons(agent_client, logged_in_agent):
    page = text(agent_client.get(DESKTOP))

    assert "Not ready" in page
    assert 'name="ready" value="1" aria-pressed="false">Ready</button>' in page
    assert 'name="ready" value="0" aria-pressed="true">Not ready</button>' in page


def test_a_logged_out_agent_sees_why_and_how_to_log_in_again(agent_client, agent):
    page = text(agent_client.get(DESKTOP))

    assert "You are logged out of the contact centre" in page
    assert f'href="{LOGIN}"' in page
    assert 'name="ready"' not in page


def test_a_caller_who_hung_up_is_shown_prominently_with_the_time(agent_client, logged_in_agent):
    hung_up_at = datetime(2025, 3, 4, 10, 42, 7, tzinfo=UTC)
    routed_session(logged_in_agent, caller_name="Ada Lovelace", phone_leg=PhoneLeg.HUNG_UP, phone_hung_up_at=hung_up_at)

    page = text(agent_client.get(SESSIONS_PARTIAL))

    assert '<span class="num">1</span> caller hung up' in page
    assert "Caller hung up at" in page
    assert 'datetime="2025-03-04T10:42:07+00:00"' in page
    assert "10:42:07" in page
    assert 'data-phone-leg="hung_up"' in page


def test_an_active_session_can_be_joined_and_one_in_transit_not_yet(agent_client, logged_in_agent, own_session):
    connecting = routed_session(logged_in_agent, caller_name="Alan Turing", state=SessionState.IN_TRANSIT)

    page = text(agent_client.get(DESKTOP))

    assert f'href="{session_url(own_session)}"' in page
    assert f'href="{session_url(connecting)}"' not in page
    assert f'action="{session_url(connecting, "end/")}"' in page  # in transit: it can still be ended


def test_the_session_page_shows_caller_contact_topic_phone_leg_and_an_end_button(agent_client, own_session):
    page = text(agent_client.get(session_url(own_session)))

    for expected in ("Ada Lovelace", "ada@example.test", "Billing question", "Connected", "End session"):
        assert expected in page
    assert f'action="{session_url(own_session, "end/")}"' in page
    assert "ada@example.test" in text(agent_client.get(partial_url(own_session)))


def test_the_sessions_partial_uses_a_constant_number_of_queries(agent_client, logged_in_agent):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert agent_client.get(SESSIONS_PARTIAL).status_code == 200
        return len(captured)

    routed_session(logged_in_agent)
    one = queries()
    for _ in range(9):
        routed_session(logged_in_agent)

    assert queries() == one


# --- Ready / not ready ----------------------------------------------------------------------------


def test_an_agent_goes_ready_and_not_ready(agent_client, logged_in_agent):
    response = agent_client.post(STATE, {"ready": "1"})

    assert response.status_code == 302
    assert response["Location"] == DESKTOP
    logged_in_agent.refresh_from_db()
    assert logged_in_agent.state == AgentState.READY

    agent_client.post(STATE, {"ready": "0"})
    logged_in_agent.refresh_from_db()
    assert logged_in_agent.state == AgentState.NOT_READY


def test_a_bad_ready_value_is_a_400(agent_client, logged_in_agent):
    assert agent_client.post(STATE, {"ready": "maybe"}).status_code == 400
    logged_in_agent.refresh_from_db()
    assert logged_in_agent.state == AgentState.NOT_READY


def test_a_logged_out_agent_cannot_go_ready_and_is_told_why(agent_client, agent):
    response = agent_client.post(STATE, {"ready": "1"}, follow=True)

    assert "Log in before going ready" in text(response)
    agent.refresh_from_db()
    assert agent.state == AgentState.LOGGED_OUT


# --- Ending a session ------------------------------------------------------------------------------


def test_an_agent_ends_its_own_session(agent_client, own_session):
    response = agent_client.post(session_url(own_session, "end/"))

    assert response.status_code == 302
    assert response["Location"] == DESKTOP
    own_session.refresh_from_db()
    assert (own_session.state, own_session.end_reason) == (SessionState.ENDED, EndReason.AGENT_ENDED)
    assert own_session.ended_by.username == "agent"
    page = text(agent_client.get(DESKTOP))
    assert "The session with Ada Lovelace has ended." in page
    assert f'id="session-{own_session.pk}"' not in page


def test_ending_an_ended_session_again_is_harmless(agent_client, own_session):
    agent_client.post(session_url(own_session, "end/"))

    response = agent_client.post(session_url(own_session, "end/"), follow=True)

    assert response.status_code == 200
    assert "had already ended" in text(response)


def test_another_agents_session_is_a_404_on_every_page_and_cannot_be_ended(
    agent_client, logged_in_agent, foreign_session
):
    assert agent_client.get(session_url(foreign_session)).status_code == 404
    assert agent_client.get(partial_url(foreign_session)).status_code == 404
    assert agent_client.post(session_url(foreign_session, "end/")).status_code == 404
    foreign_session.refresh_from_db()
    assert foreign_session.state == SessionState.ACTIVE


@pytest.mark.parametrize(
    "path", ["/agent/sessions/not-a-uuid/", "/agent/sessions/12345/end/", "/agent/partials/sessions/zzz/"]
)
def test_a_malformed_session_id_is_a_404(agent_client, logged_in_agent, path):
    assert agent_client.get(path).status_code == 404
    assert agent_client.post(path).status_code == 404


# --- CSRF on every form ----------------------------------------------------------------------------


@pytest.fixture
def strict_client(logged_in_agent) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(logged_in_agent.user)
    return client


def test_every_desktop_form_is_refused_without_a_csrf_token(strict_client, logged_in_agent, own_session):
    for path, data in [(STATE, {"ready": "1"}), (session_url(own_session, "end/"), {}), (LOGOUT, {})]:
        assert strict_client.post(path, data).status_code == 403, path

    logged_in_agent.refresh_from_db()
    own_session.refresh_from_db()
    assert logged_in_agent.state == AgentState.NOT_READY
    assert own_session.state == SessionState.ACTIVE


def test_the_log_in_form_is_refused_without_a_csrf_token(agent):
    response = Client(enforce_csrf_checks=True).post(LOGIN, {"username": "agent", "password": PASSWORD})

    assert response.status_code == 403
    agent.refresh_from_db()
    assert agent.state == AgentState.LOGGED_OUT


def test_the_desktop_forms_carry_the_token_that_makes_them_pass(strict_client, logged_in_agent, own_session):
    strict_client.get(DESKTOP)
    token = strict_client.cookies["csrftoken"].value

    assert strict_client.post(STATE, {"ready": "1", "csrfmiddlewaretoken": token}).status_code == 302
    assert strict_client.post(session_url(own_session, "end/"), {"csrfmiddlewaretoken": token}).status_code == 302
    logged_in_agent.refresh_from_db()
    own_session.refresh_from_db()
    assert (logged_in_agent.state, own_session.state) == (AgentState.READY, SessionState.ENDED)


def test_a_logged_in_agent_who_logs_in_again_keeps_its_state(agent):
    logged_in(agent, AgentState.READY)

    Client().post(LOGIN, {"username": "agent", "password": PASSWORD})

    agent.refresh_from_db()
    assert agent.state == AgentState.READY
