"""Fixtures of the desktop tests: agents logged in to the contact centre, routed sessions."""

from __future__ import annotations

import pytest
from django.utils import timezone

from sessions.choices import AgentState, PhoneLeg, SessionState
from sessions.models import Agent, CollaborationSession
from tests.factories import SessionFactory


def logged_in(agent: Agent, state: AgentState = AgentState.NOT_READY) -> Agent:
    """Set-up only: the agent as if it had logged in (the log-in flow has its own tests)."""
    now = timezone.now()
    Agent.objects.filter(pk=agent.pk).update(state=state, state_changed_at=now, logged_in_at=now)
    agent.refresh_from_db()
    return agent


def routed_session(
    agent: Agent, *, state: SessionState = SessionState.ACTIVE, **fields: object
) -> CollaborationSession:
    """A session routed to ``agent`` (active by default), written directly for set-up while
    respecting the constraints: a routed session has its agent and no end."""
    now = timezone.now()
    defaults: dict[str, object] = {
        "server": agent.server,
        "agent": agent,
        "state": state,
        "routed_at": now,
        "route_epoch": 1,
        "activated_at": now if state == SessionState.ACTIVE else None,
        "phone_leg": PhoneLeg.CONNECTED,
        "topic": "Billing question",
    }
    return SessionFactory(**{**defaults, **fields})


@pytest.fixture
def logged_in_agent(agent) -> Agent:
    return logged_in(agent)


@pytest.fixture
def own_session(logged_in_agent) -> CollaborationSession:
    return routed_session(logged_in_agent, caller_name="Ada Lovelace", caller_contact="ada@example.test")


@pytest.fixture
def foreign_session(other_agent) -> CollaborationSession:
    return routed_session(logged_in(other_agent), caller_name="Grace Hopper")
