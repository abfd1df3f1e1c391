"""The JSON shapes of agents and sessions in live events and snapshots (one place for both)."""

from __future__ import annotations

from typing import Any

from common.times import iso_datetime
from sessions.models import Agent, CollaborationSession


def session_payload(session: CollaborationSession) -> dict[str, Any]:
    return {
        "id": str(session.pk),
        "server": session.server_id,
        "state": session.state,
        "phone_leg": session.phone_leg,
        "agent": session.agent_id,
        "caller_name": session.caller_name,
        "topic": session.topic,
        "skill_group": session.skill_group_id,
        "queued_at": iso_datetime(session.queued_at),
        "routed_at": iso_datetime(session.routed_at),
        "activated_at": iso_datetime(session.activated_at),
        "phone_hung_up_at": iso_datetime(session.phone_hung_up_at),
        "phone_unknown_at": iso_datetime(session.phone_unknown_at),
        "phone_note": session.phone_note,
        "ended_at": iso_datetime(session.ended_at),
        "end_reason": session.end_reason,
    }


def agent_payload(agent: Agent) -> dict[str, Any]:
    return {
        "id": agent.pk,
        "server": agent.server_id,
        "name": agent.display_name,
        "state": agent.state,
        "logout_reason": agent.logout_reason,
    }
