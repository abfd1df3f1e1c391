"""Session and agent state changes made by people: ending sessions, agents' log-in and readiness.

Every function locks the row, checks the transition is legal, writes the audit entry
and schedules the live update and the follow-ups (Media Blender, queue) on commit.
"""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from common import live
from common.actors import Actor
from failover.choices import AuditAction, Health, ServerRole
from failover.models import Server
from failover.services.audit import audit_record, check_reason
from sessions.choices import AgentState, EndReason, LogoutReason, SessionState
from sessions.models import Agent, CollaborationSession
from sessions.payloads import agent_payload, session_payload
from sessions.services import followups

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


class ServerFailed(IllegalTransition):
    """The agent's server has failed: nothing can be routed to the agent through it."""


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
    session raises ``IllegalTransition``. ``note`` (why, in words: an administrator's
    reason) is kept on the session for its agent to read, and in the audit history.
    Releases its Media Blender route on commit."""
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
    session.end_note = note
    session.save(update_fields=["state", "end_reason", "ended_at", "ended_by", "end_note"])
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


def surviving_desktops(*, besides: int) -> list[tuple[str, str]]:
    """(name, Agent desktop URL or "") of the routing servers other than ``besides`` that
    are up and not failed: where an agent of a failed server can work instead."""
    servers = (
        Server.objects.filter(role=ServerRole.ROUTING, failed_at__isnull=True)
        .filter(Q(health=Health.UP) | Q(base_url=""))
        .exclude(pk=besides)
        .order_by("name")
    )
    desktop = reverse("agent:desktop")
    return [(s.name, f"{s.base_url.rstrip('/')}{desktop}" if s.base_url else "") for s in servers]


def server_failed_message(server: Server) -> str:
    """What an agent of a failed server is told, and where to log in instead."""
    elsewhere = [f"{name} ({url})" if url else name for name, url in surviving_desktops(besides=server.pk)]
    where = (
        f"Log in to the Agent desktop of a surviving routing server instead: {', '.join(elsewhere)}."
        if elsewhere
        else f"No other routing server is up either: log in again once {server.name} is back."
    )
    return f"Your server {server.name} has failed, so no session can reach you through it. {where}"


def _refuse_if_server_failed(agent_id: int) -> None:
    """Raise ``ServerFailed`` when the agent's server has failed. Locks the server row
    first (the failure service's order: server, then agents), so a log-in or "ready" racing
    with the failure either commits before it (and is undone by it) or sees it."""
    server_id = Agent.objects.filter(pk=agent_id).values_list("server_id", flat=True).get()
    server = Server.objects.select_for_update().get(pk=server_id)
    if server.failed_at is not None:
        raise ServerFailed(server_failed_message(server))


@transaction.atomic
def agent_login(*, agent_id: int, actor: Actor) -> Agent:
    """The agent opened its desktop: logged in, not ready. Idempotent for a logged-in agent.
    Refused (``ServerFailed``, saying where to log in instead) while the agent's server has
    failed."""
    _refuse_if_server_failed(agent_id)
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
    """Ready (takes new sessions) or not ready; only while logged in. Idempotent. Going
    ready is refused (``ServerFailed``, saying where to log in instead) while the agent's
    server has failed: nothing could reach the agent."""
    if ready:
        _refuse_if_server_failed(agent_id)
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
    are left as they are: sessions end only by the agent's or a policy's hand
    (docs/product.md, 'Caller hung up')."""
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
