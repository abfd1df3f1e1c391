"""Session and agent state changes made by people: ending sessions, agents' log-in and readiness.

Every function locks the row, checks the transition is legal, writes the audit entry
and schedules the live update and the follow-ups (Media Blender, queue) on commit.
"""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from collabadmin import live
from failover.choices import AuditAction
from failover.services.audit import audit_record, check_reason
from sessions.choices import AgentState, EndReason, LogoutReason, SessionState
from sessions.models import Agent, CollaborationSession
from sessions.payloads import agent_payload, session_payload
from sessions.services import followups

Actor = AbstractBaseUser | str | None

# The session state machine. ``ended`` is final; in_transit -> queued is the requeue of
# a route the Media Blender did not confirm in time.
TRANSITIONS: dict[str, set[str]] = {
    SessionState.QUEUED: {SessionState.IN_TRANSIT, SessionState.ENDED},
    SessionState.IN_TRANSIT: {SessionState.ACTIVE, SessionState.QUEUED, SessionState.ENDED},
    SessionState.ACTIVE: {SessionState.ENDED},
    SessionState.ENDED: set(),
}


class IllegalTransition(ValidationError):
    """The requested change is not allowed from the current state (e.g. ending an ended session)."""


def check_transition(session: CollaborationSession, new_state: str) -> None:
    if new_state not in TRANSITIONS[session.state]:
        raise IllegalTransition(
            f"A session that is {session.get_state_display().lower()} cannot become "
            f"{SessionState(new_state).label.lower()}."
        )


def publish_session(session: CollaborationSession) -> None:
    """Tell administrators, and the session's agent, about the session's new state."""
    groups = [live.STATUS_GROUP]
    if session.agent_id:
        groups.append(live.agent_group(session.agent_id))
    live.publish("session.changed", session_payload(session), groups=groups)


def publish_agent(agent: Agent) -> None:
    live.publish("agent.changed", agent_payload(agent), groups=[live.STATUS_GROUP, live.agent_group(agent.pk)])


@transaction.atomic
def session_end(*, session_id: object, actor: Actor, reason: EndReason, note: str = "") -> CollaborationSession:
    """End a session (agent, administrator, caller or policy). Final: ending an ended
    session raises ``IllegalTransition``. Releases its Media Blender route on commit."""
    if reason in (EndReason.NONE, ""):
        raise ValidationError({"reason": "Say why the session ends."})
    note = check_reason(note)
    session = CollaborationSession.objects.select_for_update().get(pk=session_id)
    check_transition(session, SessionState.ENDED)
    previous = session.state
    session.state = SessionState.ENDED
    session.end_reason = reason
    session.ended_at = timezone.now()
    session.ended_by = actor if isinstance(actor, AbstractBaseUser) else None
    session.save(update_fields=["state", "end_reason", "ended_at", "ended_by"])
    audit_record(
        actor=actor,
        action=AuditAction.SESSION_ENDED,
        target=session,
        reason=note or reason,
        before={"state": previous},
        after={"state": SessionState.ENDED, "end_reason": reason},
    )
    publish_session(session)
    followups.after_session_ended(session, previous_state=previous)
    return session


def _change_agent(agent_id: int, *, actor: Actor, new_state: AgentState, reason: str = "", **fields: object) -> Agent:
    agent = Agent.objects.select_for_update(of=("self",)).select_related("user").get(pk=agent_id)
    before = {"state": agent.state}
    now = timezone.now()
    agent.state = new_state
    agent.state_changed_at = now
    for name, value in fields.items():
        setattr(agent, name, now if value is timezone.now else value)
    agent.save(update_fields=["state", "state_changed_at", *fields])
    action = AuditAction.AGENT_LOGGED_OUT if new_state == AgentState.LOGGED_OUT else AuditAction.AGENT_STATE
    after = {"state": new_state}
    if fields.get("logout_reason"):
        after["logout_reason"] = fields["logout_reason"]
    audit_record(actor=actor, action=action, target=agent, reason=reason, before=before, after=after)
    publish_agent(agent)
    followups.after_agent_changed(agent)
    return agent


@transaction.atomic
def agent_login(*, agent_id: int, actor: Actor) -> Agent:
    """The agent opened its desktop: logged in, not ready. Idempotent for a logged-in agent."""
    agent = Agent.objects.select_for_update().get(pk=agent_id)
    if not agent.enabled:
        raise ValidationError("This agent is disabled in the configuration.")
    if agent.state != AgentState.LOGGED_OUT:
        return agent
    return _change_agent(
        agent_id, actor=actor, new_state=AgentState.NOT_READY, logged_in_at=timezone.now, logout_reason=""
    )


@transaction.atomic
def agent_set_ready(*, agent_id: int, ready: bool, actor: Actor) -> Agent:
    """Ready (takes new sessions) or not ready; only while logged in. Idempotent."""
    agent = Agent.objects.select_for_update().get(pk=agent_id)
    if agent.state == AgentState.LOGGED_OUT:
        raise IllegalTransition("Log in before going ready or not ready.")
    target = AgentState.READY if ready else AgentState.NOT_READY
    if agent.state == target:
        return agent
    return _change_agent(agent_id, actor=actor, new_state=target)


@transaction.atomic
def agent_logout(*, agent_id: int, actor: Actor, reason: LogoutReason, note: str = "") -> Agent:
    """Log the agent out (its own choice, or forced by an administrator, who says why in
    ``note``: the audit entry's reason, the code going to its ``after``). Its open sessions
    are left as they are: the seed ends sessions only by the agent's or a policy's hand."""
    note = check_reason(note)
    agent = Agent.objects.select_for_update().get(pk=agent_id)
    if agent.state == AgentState.LOGGED_OUT:
        return agent
    return _change_agent(
        agent_id,
        actor=actor,
        new_state=AgentState.LOGGED_OUT,
        reason=note or reason,
        logged_out_at=timezone.now,
        logout_reason=reason,
    )
