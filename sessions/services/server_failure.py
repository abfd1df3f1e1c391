"""What a Collaboration Server's failure does to its agents and sessions (PRODUCT.md row 11)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from failover.choices import AuditAction
from failover.models import AuditEntry, Policy, Server
from failover.services.audit import audit_entry, audit_record_many
from sessions.choices import ROUTED_STATES, AgentState, EndReason, LogoutReason, SessionState
from sessions.models import Agent, CollaborationSession, SkillGroup
from sessions.services import followups
from sessions.services.director import NoHealthyServer, choose_server
from sessions.services.lifecycle import publish_agent, publish_session

SYSTEM = "system:monitor"


@dataclass(frozen=True)
class FailureOutcome:
    agents_logged_out: int
    sessions_ended: int
    queued_adopted: int
    queued_ended: int
    adopted_by: str | None

    def describe(self) -> str:
        adopted = f"{self.queued_adopted} queued adopted by {self.adopted_by}" if self.queued_adopted else ""
        parts = [
            f"{self.agents_logged_out} agent log-ins ended",
            f"{self.sessions_ended} sessions ended",
            adopted,
            f"{self.queued_ended} queued ended" if self.queued_ended else "",
        ]
        return ", ".join(part for part in parts if part)

    def as_dict(self) -> dict:
        return asdict(self)


def end_work_of_failed_server(*, server: Server, at: datetime) -> FailureOutcome:
    """End the failed server's agent log-ins and current sessions with ``server_failed`` at
    ``at``; adopt its queued sessions by the least-loaded surviving routing server (policy,
    on by default) or end them too. Runs in the caller's transaction; one audit row per
    session and agent. On commit: a ``session.changed`` for every ended or adopted session
    and an ``agent.changed`` for every logged-out agent (to the status group and the
    agent's desktops), and a drain of the survivor's queue when it adopted sessions.
    """
    agents = list(Agent.objects.filter(server=server).exclude(state=AgentState.LOGGED_OUT).select_related("user"))
    Agent.objects.filter(pk__in=[a.pk for a in agents]).update(
        state=AgentState.LOGGED_OUT, state_changed_at=at, logged_out_at=at, logout_reason=LogoutReason.SERVER_FAILED
    )
    current = list(CollaborationSession.objects.filter(server=server, state__in=ROUTED_STATES))
    CollaborationSession.objects.filter(pk__in=[s.pk for s in current]).update(
        state=SessionState.ENDED, end_reason=EndReason.SERVER_FAILED, ended_at=at
    )
    queued = list(CollaborationSession.objects.filter(server=server, state=SessionState.QUEUED))
    survivor = None
    if queued and Policy.current().adopt_queued_on_server_failure:
        try:
            survivor = choose_server(exclude_ids=[server.pk])
        except NoHealthyServer:
            survivor = None
    if survivor is not None:
        _adopt(queued, failed=server, survivor=survivor)
    else:
        CollaborationSession.objects.filter(pk__in=[s.pk for s in queued]).update(
            state=SessionState.ENDED, end_reason=EndReason.SERVER_FAILED, ended_at=at
        )
    _audit(agents, current, queued, survivor)
    _publish(agents, [*current, *queued])
    return FailureOutcome(
        agents_logged_out=len(agents),
        sessions_ended=len(current),
        queued_adopted=len(queued) if survivor else 0,
        queued_ended=0 if survivor else len(queued),
        adopted_by=survivor.name if survivor else None,
    )


def _adopt(queued: list[CollaborationSession], *, failed: Server, survivor: Server) -> None:
    # Skill groups belong to one server's configuration: map each by its ICM id. Queue
    # order is kept because ``queued_at`` is not touched.
    survivor_groups = dict(SkillGroup.objects.filter(server=survivor).values_list("icm_id", "pk"))
    failed_groups = dict(SkillGroup.objects.filter(server=failed).values_list("pk", "icm_id"))
    by_group: dict[int | None, list] = {}
    for session in queued:
        by_group.setdefault(session.skill_group_id, []).append(session.pk)
    for group_id, ids in by_group.items():
        mapped = survivor_groups.get(failed_groups.get(group_id)) if group_id else None
        CollaborationSession.objects.filter(pk__in=ids).update(
            server=survivor, adopted_from=failed, skill_group_id=mapped
        )


def _publish(agents: list[Agent], sessions: list[CollaborationSession]) -> None:
    # The bulk updates above bypass the services that publish each change, so without this
    # an agent's desktop would learn of the failure only at its periodic resync. The rows are
    # re-read (one query each, not one per row) so the events carry what was written.
    adopted = None
    for session in CollaborationSession.objects.filter(pk__in=[s.pk for s in sessions]):
        publish_session(session)
        if session.state == SessionState.QUEUED:
            adopted = session
    for agent in Agent.objects.filter(pk__in=[a.pk for a in agents]).select_related("user"):
        publish_agent(agent)
    if adopted is not None:
        # Adopted sessions are new work for the survivor: drain its queue once this commits,
        # as for a new request, not at the beat's safety net. One drain takes the whole
        # queue, so one adopted session stands for all of them.
        followups.after_session_requested(adopted)


def _audit(agents, current, queued, survivor) -> None:
    rows = [
        audit_entry(
            actor=SYSTEM,
            action=AuditAction.AGENT_LOGGED_OUT,
            target=a,
            reason=EndReason.SERVER_FAILED,
            before={"state": a.state},
            after={"state": AgentState.LOGGED_OUT, "reason": LogoutReason.SERVER_FAILED},
        )
        for a in agents
    ]
    for session in current:
        rows.append(_session_row(session, AuditAction.SESSION_ENDED, {"state": "ended", "reason": "server_failed"}))
    for session in queued:
        if survivor:
            after = {"server": survivor.name, "state": SessionState.QUEUED}
            rows.append(_session_row(session, AuditAction.SESSION_ADOPTED, after))
        else:
            rows.append(_session_row(session, AuditAction.SESSION_ENDED, {"state": "ended", "reason": "server_failed"}))
    audit_record_many(rows)


def _session_row(session: CollaborationSession, action: AuditAction, after: dict) -> AuditEntry:
    return audit_entry(
        actor=SYSTEM,
        action=action,
        target=session,
        reason=EndReason.SERVER_FAILED,
        before={"state": session.state, "server": session.server_id},
        after=after,
    )
