"""What a Media Blender switchover does to agents and sessions (docs/product.md, 'Media Blender failover').

The newly connected MB knows nothing of this server (a real MB forgets on restart, and the
standby never had the routes). Right after the switchover commits:

1. every logged-in agent is registered with it, with its readiness and the slots the
   database says it has left (active sessions of the old MB count against them);
2. every session in transit is asked of it again under the new epoch (``route`` is
   idempotent per session); a route it confirms becomes active through the event, one it
   does not is requeued by the transit timeout;
3. the queue is drained at once, without waiting for a poll.

Active sessions are not touched: their calls stay where they are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from failover.choices import PeerKind
from failover.models import Link
from failover.peering import client
from sessions.choices import SessionState
from sessions.media_blender_client import ANY_SKILL_GROUP, MediaBlenderClient, connected_media_blender
from sessions.models import CollaborationSession
from sessions.services.drain import queue_drain
from sessions.services.media_blender import (
    AgentSnapshot,
    Registered,
    agent_snapshots,
    desired_registration,
    sync_agents,
)
from sessions.services.routes import RouteOutcome, session_route

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SwitchoverFollowUp:
    """What the follow-up did, for logs and tests."""

    agents_registered: int
    transits_rerouted: int
    transits_left: int
    queued_routed: int


def after_media_blender_switchover(*, link_id: int, epoch: int) -> SwitchoverFollowUp | None:
    """Bring the MB connected at ``epoch`` up to date with the server's agents and sessions,
    then drain the queue.

    ``None`` (nothing done) when the link is gone or has moved past ``epoch``: the later
    switchover scheduled its own follow-up. Safe to run twice: registrations are
    idempotent and a session already re-routed under ``epoch`` is not asked again. An MB
    that stops answering midway ends the follow-up (the monitor switches again).
    """
    link = Link.objects.filter(pk=link_id, kind=PeerKind.MEDIA_BLENDER).values("server_id", "epoch").first()
    if link is None or link["epoch"] != epoch:
        return None
    server_id = link["server_id"]
    target = connected_media_blender(server_id)
    if target is None or target.epoch != epoch:
        return None
    registered_count = rerouted = left = 0
    try:
        with MediaBlenderClient(target) as mb:
            registered = mb.list_agents()
            agents = agent_snapshots(server_id=server_id)
            known_ids = {a.icm_id for a in agents}
            sync_agents(mb, agents, registered=registered, forget=[i for i in registered if i not in known_ids])
            registered_count = sum(1 for a in agents if a.icm_id in registered)
            rerouted, left = _reroute_transits(mb, server_id=server_id, epoch=epoch, registered=registered)
    except client.PeerException as exc:
        log.warning("follow-up of the switchover to %s (epoch %s) stopped: %s", target.name, epoch, exc)
    drained = queue_drain(server_id=server_id)
    result = SwitchoverFollowUp(registered_count, rerouted, left, drained)
    log.info("media blender %s connected at epoch %s: %s", target.name, epoch, result)
    return result


def _reroute_transits(mb: MediaBlenderClient, *, server_id: int, epoch: int, registered: Registered) -> tuple[int, int]:
    """Ask the new MB for every session in transit under an older epoch, oldest first;
    returns (re-routed, left in transit).

    The MB picks the agent itself. Just before asking, the agent holding the session gets
    that session's slot back at the MB (the registration leaves the session out of its
    count), so the session can return to it; whichever agent the MB picks, the database
    re-checks its capacity, and the holder is re-synced right after.
    """
    transits = list(
        CollaborationSession.objects.filter(server_id=server_id, state=SessionState.IN_TRANSIT)
        .exclude(route_epoch=epoch)
        .order_by("queued_at", "pk")
        .values_list("pk", "agent_id", "skill_group__icm_id")
    )
    rerouted = left = 0
    for session_id, holder_id, group_icm_id in transits:
        holder = _snapshot(server_id, holder_id)
        if holder is not None:
            view = registered.get(holder.icm_id)
            known = frozenset(view["sessions"]) if view else frozenset()
            registration = desired_registration(holder, known=known, besides=frozenset({str(session_id)}))
            if registration is not None:
                registered[holder.icm_id] = mb.register_agent(registration)
        answer = mb.route_fresh(str(session_id), group_icm_id or ANY_SKILL_GROUP)
        outcome = None
        if answer is not None:
            outcome = session_route(session_id=session_id, agent_icm_id=answer.agent_id, epoch=epoch)
            if outcome not in (RouteOutcome.ROUTED, RouteOutcome.ALREADY_ROUTED):
                mb.release(answer.session_id)
        if outcome in (RouteOutcome.ROUTED, RouteOutcome.ALREADY_ROUTED):
            rerouted += 1
        else:
            left += 1
        holder = _snapshot(server_id, holder_id)
        if holder is not None:
            # The route just made (or released) changed the MB's sessions: re-read them.
            registered.clear()
            registered.update(mb.list_agents())
            sync_agents(mb, [holder], registered=registered)
        if outcome == RouteOutcome.STALE_EPOCH:
            break  # switched again; the next follow-up takes over
    return rerouted, left


def _snapshot(server_id: int, agent_id: int | None) -> AgentSnapshot | None:
    found = agent_snapshots(server_id=server_id, agent_ids=[agent_id]) if agent_id is not None else []
    return found[0] if found else None
