"""What a Collaboration Server's failure does to its agents and sessions.

See docs/product.md, 'Collaboration Server failure'.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from django.db.models import Q

from common import live
from common.actors import MONITOR
from failover.choices import AuditAction
from failover.models import AuditEntry, Policy, Server
from failover.services.audit import audit_entry, audit_record_many
from sessions.choices import ROUTED_STATES, AgentState, EndReason, LogoutReason, SessionState
from sessions.models import Agent, CollaborationSession, SkillGroup
from sessions.services import followups
from sessions.services.director import NoHealthyServer, SkillGroupKey, choose_server
from sessions.services.lifecycle import publish_agent, publish_session


@dataclass(frozen=True)
class FailureOutcome:
    agents_logged_out: int
    sessions_ended: int
    queued_adopted: int
    queued_ended: int
    adopted_by: str | None
    # Of ``queued_ended``: those a survivor could have taken but for their skill group.
    queued_unserved: int = 0

    def describe(self) -> str:
        adopted = f"{self.queued_adopted} queued adopted by {self.adopted_by}" if self.queued_adopted else ""
        unserved = f" ({self.queued_unserved} for a skill group no survivor has)" if self.queued_unserved else ""
        parts = [
            f"{self.agents_logged_out} agent log-ins ended",
            f"{self.sessions_ended} sessions ended",
            adopted,
            f"{self.queued_ended} queued ended{unserved}" if self.queued_ended else "",
        ]
        return ", ".join(part for part in parts if part)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Adoption:
    """Where one queued session goes: a survivor and its skill group there, or an end."""

    session: CollaborationSession
    survivor: Server | None = None
    skill_group: SkillGroup | None = None
    matched_by: str | None = None  # "icm_id" or "name"; None for an "any agent" session
    end_note: str = ""


def end_work_of_failed_server(*, server: Server, at: datetime) -> FailureOutcome:
    """End the failed server's agent log-ins and current sessions with ``server_failed`` at
    ``at``; its queued sessions are adopted by surviving routing servers (policy, on by
    default) or ended too. A session keeps its skill group: each is adopted by a survivor
    that has the same skill group (by ICM id, else by name), picked as the director picks
    for a new caller; a session whose skill group no survivor has is ended, with a note
    saying so, rather than handed to any agent. Runs in the caller's transaction; one
    audit row per session and agent, saying how each skill group was matched. On commit: a
    ``session.changed`` for every ended or adopted session and an ``agent.changed`` for
    every logged-out agent, and a drain of each survivor's queue.
    """
    agents = list(Agent.objects.filter(server=server).exclude(state=AgentState.LOGGED_OUT).select_related("user"))
    Agent.objects.filter(pk__in=[a.pk for a in agents]).update(
        state=AgentState.LOGGED_OUT, state_changed_at=at, logged_out_at=at, logout_reason=LogoutReason.SERVER_FAILED
    )
    current = list(
        CollaborationSession.objects.filter(server=server, state__in=ROUTED_STATES).select_related("skill_group")
    )
    CollaborationSession.objects.filter(pk__in=[s.pk for s in current]).update(
        state=SessionState.ENDED, end_reason=EndReason.SERVER_FAILED, ended_at=at
    )
    queued = list(
        CollaborationSession.objects.filter(server=server, state=SessionState.QUEUED).select_related("skill_group")
    )
    if Policy.current().adopt_queued_on_server_failure:
        plan = adoption_plan(queued, failed=server)
    else:
        plan = [Adoption(session, end_note="Adopting queued sessions is off (policy).") for session in queued]
    _apply(plan, failed=server, at=at)
    _audit(agents, current, plan, failed=server)
    _publish(agents, [*current, *queued])
    _tell_logged_out_agents(server, besides=[a.pk for a in agents])
    adopted = [a for a in plan if a.survivor is not None]
    survivors = sorted({a.survivor.name for a in adopted if a.survivor is not None})
    return FailureOutcome(
        agents_logged_out=len(agents),
        sessions_ended=len(current),
        queued_adopted=len(adopted),
        queued_ended=len(plan) - len(adopted),
        adopted_by=", ".join(survivors) or None,
        queued_unserved=sum(1 for a in plan if a.end_note.startswith(UNSERVED)),
    )


UNSERVED = "No surviving routing server has the skill group"


def adoption_plan(queued: list[CollaborationSession], *, failed: Server) -> list[Adoption]:
    """Decide each queued session's survivor and skill group, one director query (and one
    skill group lookup) per distinct skill group."""
    decided: dict[int | None, tuple[Server | None, SkillGroup | None, str | None, str]] = {}
    plan = []
    for session in queued:
        key = session.skill_group_id
        if key not in decided:
            decided[key] = _survivor_for(session.skill_group, failed=failed)
        survivor, group, matched_by, note = decided[key]
        plan.append(Adoption(session, survivor=survivor, skill_group=group, matched_by=matched_by, end_note=note))
    return plan


def _survivor_for(
    group: SkillGroup | None, *, failed: Server
) -> tuple[Server | None, SkillGroup | None, str | None, str]:
    """(survivor, its matching skill group, matched by, end note) for the sessions of
    ``group`` (``None``: "any agent" sessions)."""
    wanted = SkillGroupKey(name=group.name, icm_id=group.icm_id) if group is not None else None
    try:
        survivor = choose_server(skill_group=wanted, exclude_ids=[failed.pk])
    except NoHealthyServer:
        return None, None, None, "No surviving routing server could take it over."
    if group is None:
        return survivor, None, None, ""
    # The director ranks servers with the skill group first: if this one lacks it, all do.
    candidates = SkillGroup.objects.filter(server=survivor).filter(Q(icm_id=group.icm_id) | Q(name=group.name))
    by_icm_id = {g.icm_id: g for g in candidates}
    if group.icm_id in by_icm_id:
        return survivor, by_icm_id[group.icm_id], "icm_id", ""
    by_name = {g.name: g for g in candidates}
    if group.name in by_name:
        return survivor, by_name[group.name], "name", ""
    return None, None, None, f"{UNSERVED} {group.name} (ICM id {group.icm_id})."


def _apply(plan: list[Adoption], *, failed: Server, at: datetime) -> None:
    """Write the plan: one update per (survivor, skill group), one per end note. Queue order
    is kept because ``queued_at`` is not touched."""
    moves: dict[tuple[int, int | None], list] = {}
    ends: dict[str, list] = {}
    for adoption in plan:
        if adoption.survivor is not None:
            group_id = adoption.skill_group.pk if adoption.skill_group is not None else None
            moves.setdefault((adoption.survivor.pk, group_id), []).append(adoption.session.pk)
        else:
            ends.setdefault(adoption.end_note, []).append(adoption.session.pk)
    for (survivor_id, group_id), ids in moves.items():
        CollaborationSession.objects.filter(pk__in=ids).update(
            server_id=survivor_id, adopted_from=failed, skill_group_id=group_id
        )
    for note, ids in ends.items():
        CollaborationSession.objects.filter(pk__in=ids).update(
            state=SessionState.ENDED, end_reason=EndReason.SERVER_FAILED, ended_at=at, end_note=note
        )


def _publish(agents: list[Agent], sessions: list[CollaborationSession]) -> None:
    # The bulk updates above bypass the services that publish each change, so without this
    # an agent's desktop would learn of the failure only at its periodic resync. The rows are
    # re-read (one query each, not one per row) so the events carry what was written.
    adopted: dict[int, CollaborationSession] = {}
    for session in CollaborationSession.objects.filter(pk__in=[s.pk for s in sessions]):
        publish_session(session)
        if session.state == SessionState.QUEUED:
            adopted[session.server_id] = session
    for agent in Agent.objects.filter(pk__in=[a.pk for a in agents]).select_related("user"):
        publish_agent(agent)
    for session in adopted.values():
        # Adopted sessions are new work for their survivor: drain its queue once this
        # commits, as for a new request, not at the beat's safety net. One drain takes the
        # whole queue, so one adopted session stands for all of a survivor's.
        followups.after_session_requested(session)


def _tell_logged_out_agents(server: Server, *, besides: list[int]) -> None:
    """Agents already logged out (by an administrator, say) may still have the desktop
    open: their state panel must say the server failed and where to log in instead, so
    their desktops refresh it too (one event, to each of their groups)."""
    others = Agent.objects.filter(server=server, state=AgentState.LOGGED_OUT).exclude(pk__in=besides)
    groups = [live.agent_group(pk) for pk in others.values_list("pk", flat=True)]
    if groups:
        live.publish(
            "server.changed", {"server": server.pk, "name": server.name, "health": server.health}, groups=groups
        )


def _audit(agents: list[Agent], current: list[CollaborationSession], plan: list[Adoption], *, failed: Server) -> None:
    rows = [
        audit_entry(
            actor=MONITOR,
            action=AuditAction.AGENT_LOGGED_OUT,
            target=a,
            reason=EndReason.SERVER_FAILED,
            before={"state": a.state},
            after={"state": AgentState.LOGGED_OUT, "reason": LogoutReason.SERVER_FAILED},
        )
        for a in agents
    ]
    ended = {"state": SessionState.ENDED, "reason": EndReason.SERVER_FAILED}
    for session in current:
        rows.append(_session_row(session, AuditAction.SESSION_ENDED, failed=failed, after=ended))
    for adoption in plan:
        if adoption.survivor is None:
            row = _session_row(adoption.session, AuditAction.SESSION_ENDED, failed=failed, after=ended)
            row.reason = (adoption.end_note or EndReason.SERVER_FAILED)[:300]
        else:
            group = adoption.skill_group
            after = {
                "server": adoption.survivor.name,
                "state": SessionState.QUEUED,
                "skill_group": group.name if group is not None else None,
                "skill_group_icm_id": group.icm_id if group is not None else None,
                "skill_group_matched_by": adoption.matched_by,
            }
            row = _session_row(adoption.session, AuditAction.SESSION_ADOPTED, failed=failed, after=after)
        rows.append(row)
    audit_record_many(rows)


def _session_row(session: CollaborationSession, action: AuditAction, *, failed: Server, after: dict) -> AuditEntry:
    group = session.skill_group if session.skill_group_id else None
    return audit_entry(
        actor=MONITOR,
        action=action,
        target=session,
        reason=EndReason.SERVER_FAILED,
        before={
            "state": session.state,
            "server": failed.name,
            "skill_group": group.name if group is not None else None,
            "skill_group_icm_id": group.icm_id if group is not None else None,
        },
        after=after,
    )
