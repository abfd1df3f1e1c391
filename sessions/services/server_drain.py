"""What a server's drain (planned maintenance) does to its queue, agents and sessions.

The failover engine changes the server (failover/services/drain.py) and calls
:func:`after_server_drain_changed` through its hook, in the same transaction. The beat's
``sessions.drain_deadlines`` runs :func:`sessions_end_past_drain_deadline`. See
docs/operations.md, 'Planned maintenance: drain a server'.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from common import live
from common.actors import MAINTENANCE, Actor
from failover.choices import AuditAction
from failover.models import Server
from failover.services.audit import audit_entry, audit_record_many
from failover.services.drain import drain_payload
from sessions.choices import ROUTED_STATES, AgentState, EndReason, SessionState
from sessions.models import Agent, CollaborationSession
from sessions.services import followups
from sessions.services.lifecycle import IllegalTransition, publish_session, session_end
from sessions.services.server_failure import adoption_plan

log = logging.getLogger(__name__)


def after_server_drain_changed(*, server: Server, actor: Actor, reason: str) -> int:
    """The failover hook: tell the server's agents (their desktops show or drop the banner)
    and, when it drains, hand its queue on. Returns how many queued sessions moved."""
    moved = hand_queue_on(server=server, actor=actor, reason=reason) if server.is_draining else 0
    agent_ids = Agent.objects.filter(server=server).exclude(state=AgentState.LOGGED_OUT).values_list("pk", flat=True)
    if agent_ids:
        live.publish("server.changed", drain_payload(server), groups=[live.agent_group(pk) for pk in agent_ids])
    return moved


def hand_queue_on(*, server: Server, actor: Actor, reason: str) -> int:
    """Move the draining server's queued sessions to surviving routing servers, as on a
    server's failure (same choice of survivor and skill group, ``queued_at`` kept so the
    order is kept), in the caller's transaction. A session no survivor can take stays
    queued here: the drained server's own agents may still serve it, and the deadline ends
    it. Audited per session, pushed live; the survivors' queues are drained on commit."""
    queued = list(
        CollaborationSession.objects.filter(server=server, state=SessionState.QUEUED)
        .select_related("skill_group")
        .order_by("queued_at", "pk")
    )
    plan = [step for step in adoption_plan(queued, failed=server) if step.survivor is not None]
    rows = []
    for step in plan:
        group = step.skill_group
        CollaborationSession.objects.filter(pk=step.session.pk, state=SessionState.QUEUED, server=server).update(
            server=step.survivor, adopted_from=server, skill_group=group
        )
        rows.append(
            audit_entry(
                actor=actor,
                action=AuditAction.SESSION_ADOPTED,
                target=step.session,
                reason=f"server {server.name} drained: {reason}",
                before={"state": SessionState.QUEUED, "server": server.name},
                after={
                    "server": step.survivor.name,
                    "skill_group": group.name if group is not None else None,
                    "skill_group_matched_by": step.matched_by,
                },
            )
        )
    audit_record_many(rows)
    _publish_moved([step.session.pk for step in plan])
    return len(plan)


def _publish_moved(session_ids: list[int]) -> None:
    survivors: dict[int, CollaborationSession] = {}
    for session in CollaborationSession.objects.filter(pk__in=session_ids):
        publish_session(session)
        survivors[session.server_id] = session
    for session in survivors.values():
        # One drain takes a survivor's whole queue: one adopted session stands for all.
        followups.after_session_requested(session)


def sessions_end_past_drain_deadline(*, now: datetime | None = None) -> int:
    """For every draining server: hand on any session queued there since the drain began
    (one sent back to the queue, say), and once its deadline has passed end what is
    still open on it with ``server_maintenance``. Returns how many sessions ended. Each
    session ends through ``session_end`` (audit, live update, Media Blender release);
    one ended meanwhile is skipped."""
    now = now or timezone.now()
    ended = 0
    for server in Server.objects.filter(drain_started_at__isnull=False):
        with transaction.atomic():
            locked = Server.objects.select_for_update().get(pk=server.pk)
            if locked.is_draining:
                hand_queue_on(server=locked, actor=MAINTENANCE, reason=locked.drain_reason)
        if server.drain_deadline is not None and server.drain_deadline <= now:
            ended += _end_open_sessions(server)
    return ended


def _end_open_sessions(server: Server) -> int:
    open_states = [*ROUTED_STATES, SessionState.QUEUED]
    due = CollaborationSession.objects.filter(server=server, state__in=open_states).order_by("queued_at", "pk")
    count = 0
    note = f"server {server.name} maintenance deadline passed ({server.drain_reason})"
    for session_id in due.values_list("pk", flat=True):
        try:
            session_end(session_id=session_id, actor=MAINTENANCE, reason=EndReason.SERVER_MAINTENANCE, note=note[:300])
        except (IllegalTransition, CollaborationSession.DoesNotExist):
            continue  # ended by its agent, or removed, since the query
        count += 1
    if count:
        log.info("server %s drain deadline: %s sessions ended (server_maintenance)", server.name, count)
    return count
