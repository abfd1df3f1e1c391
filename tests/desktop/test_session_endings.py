"""How a session's end is told (issue 15, point 4): its agent sees who ended it and why
(an administrator's session end no longer just makes the row vanish), and its caller reads
what happened, with no "keep this page open" once there is nothing left to wait for."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

from sessions.choices import EndReason, SessionState
from sessions.endings import RECENTLY_ENDED_FOR
from sessions.models import CollaborationSession
from sessions.services.lifecycle import session_end
from tests.desktop.conftest import routed_session
from tests.factories import SessionFactory, StaffFactory

pytestmark = pytest.mark.django_db

KEEP_OPEN = "Keep this page open"

# What the caller's page must say for each end reason (a session that had been connected).
CALLER_SAYS = {
    EndReason.AGENT_ENDED: "The agent ended the session.",
    EndReason.ADMIN_ENDED: "The session was ended by an administrator of the contact centre.",
    EndReason.CALLER_LEFT: "You ended the session.",
    EndReason.HANGUP_TIMEOUT: "The session ended some time after your phone call ended.",
    EndReason.SERVER_FAILED: "The server handling your session stopped working, so the session ended.",
    EndReason.TRANSIT_FAILED: "We could not connect you to an agent, so the request ended.",
    EndReason.SERVER_MAINTENANCE: "The server handling your session was taken down for planned maintenance, "
    "so the session ended.",
    EndReason.PHONE_UNTRACKED: "The session ended some time after we lost track of your phone call.",
}


def ended(session: CollaborationSession, reason: EndReason, **fields: object) -> CollaborationSession:
    """Set-up only: the session as its end left it."""
    values = {"state": SessionState.ENDED, "end_reason": reason, "ended_at": timezone.now(), **fields}
    CollaborationSession.objects.filter(pk=session.pk).update(**values)
    session.refresh_from_db()
    return session


def caller_page(session: CollaborationSession) -> str:
    return Client().get(f"/request/{session.pk}/").content.decode()


def test_every_end_reason_has_its_own_words_for_the_caller():
    assert set(CALLER_SAYS) == {reason for reason in EndReason if reason != EndReason.NONE}


@pytest.mark.parametrize("reason", list(CALLER_SAYS))
def test_the_callers_page_says_how_it_ended_and_no_longer_asks_to_stay(reason, logged_in_agent):
    session = ended(routed_session(logged_in_agent), reason)

    for page in (caller_page(session), Client().get(f"/request/{session.pk}/status/").content.decode()):
        assert CALLER_SAYS[reason] in page
        assert KEEP_OPEN not in page
        assert "You can close this page" in page


def test_while_the_session_is_open_the_caller_is_asked_to_keep_the_page(server):
    assert KEEP_OPEN in caller_page(SessionFactory(server=server))


def test_a_caller_who_never_reached_an_agent_is_told_so(server):
    left = ended(SessionFactory(server=server), EndReason.CALLER_LEFT)
    dropped = ended(SessionFactory(server=server), EndReason.SERVER_FAILED)

    assert "You left the queue." in caller_page(left)
    assert "before an agent was free" in caller_page(dropped)


def test_the_agent_sees_who_ended_its_session_and_why_after_a_reload_too(logged_in_agent, agent_client):
    admin = StaffFactory(first_name="Dana", last_name="Admin")
    session = routed_session(logged_in_agent, caller_name="Ada Lovelace")

    session_end(session_id=session.pk, actor=admin, reason=EndReason.ADMIN_ENDED, note="Duplicate request")

    for url in ("/agent/", "/agent/partials/sessions/"):
        page = agent_client.get(url).content.decode()
        assert f'id="session-{session.pk}"' not in page  # no longer among the open ones
        assert f'id="ended-{session.pk}"' in page
        assert "Ended by <strong>an administrator (Dana Admin)</strong>" in page
        assert "Duplicate request" in page
        assert "Your session with Ada Lovelace was ended by an administrator (Dana Admin): Duplicate request." in page
    detail = agent_client.get(f"/agent/sessions/{session.pk}/").content.decode()
    assert "This session was ended by an administrator (Dana Admin)" in detail


def test_the_agents_own_ends_are_listed_quietly_and_old_ones_drop_off(logged_in_agent, agent_client):
    own = routed_session(logged_in_agent, caller_name="Alan Turing")
    session_end(session_id=own.pk, actor=logged_in_agent.user, reason=EndReason.AGENT_ENDED)
    old = ended(routed_session(logged_in_agent, caller_name="Grace Hopper"), EndReason.CALLER_LEFT)
    CollaborationSession.objects.filter(pk=old.pk).update(ended_at=timezone.now() - RECENTLY_ENDED_FOR - timedelta(1))

    page = agent_client.get("/agent/partials/sessions/").content.decode()

    assert "Ended by <strong>you</strong>" in page
    assert f'id="ended-{own.pk}"' in page
    assert 'data-ended-text="Your session with Alan Turing' not in page  # nothing to announce: the agent did it
    assert "Grace Hopper" not in page


def test_an_end_note_longer_than_it_can_be_kept_is_refused_not_cut(logged_in_agent):
    session = routed_session(logged_in_agent)

    with pytest.raises(ValidationError, match="at most 300 are kept"):
        session_end(session_id=session.pk, actor="admin", reason=EndReason.ADMIN_ENDED, note="x" * 301)
    session.refresh_from_db()
    assert session.state == SessionState.ACTIVE


def test_the_api_says_why_a_session_ended(logged_in_agent, admin_api, agent_api):
    session = routed_session(logged_in_agent)

    response = admin_api.post(f"/api/v1/sessions/{session.pk}/end/", {"reason": "Duplicate request"}, format="json")

    assert response.status_code == 200
    assert (response.json()["end_reason"], response.json()["end_note"]) == ("admin_ended", "Duplicate request")
    own = agent_api.get(f"/api/v1/sessions/{session.pk}/").json()
    assert (own["ended_by"], own["end_note"], own["any_skill_group"]) == ("admin", "Duplicate request", True)
