"""Keeping the connected Media Blender's registrations and routes in step with the database.

The database is the truth; the MB holds a copy that it loses when it restarts and that a
newly connected MB never had. What the MB must hold for an agent (``desired_registration``)
follows from what the simulator tracks: it routes to an agent while ``len(sessions) <
max_sessions``, counting only the routes it made itself. So an agent that holds sessions
this MB does not know (active sessions routed by the MB before a switchover) is registered
with that many fewer slots, and the MB can never push it past its ``max_sessions``.

Network I/O happens here, always outside a transaction; the database is only read.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from failover.peering import client
from sessions.choices import ROUTED_STATES, AgentState, SessionState
from sessions.media_blender_client import (
    ANY_SKILL_GROUP,
    NOT_READY,
    READY,
    AgentRegistration,
    MediaBlenderClient,
    connected_media_blender,
    media_blender_peers,
    registration_args,
    release_at,
)
from sessions.models import Agent, CollaborationSession
from sessions.services.routes import as_session_id

log = logging.getLogger(__name__)

# The standby or a dead peer gets a short time-out: releasing there is housekeeping.
STANDBY_RELEASE_TIMEOUT = 1.0

Registered = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class AgentSnapshot:
    """What the database says about an agent, as far as the MB is concerned."""

    pk: int
    icm_id: str
    state: str
    enabled: bool
    max_sessions: int
    skill_groups: tuple[str, ...]
    held: frozenset[str]  # ids of the sessions it holds (in transit or active)

    @property
    def logged_in(self) -> bool:
        return self.enabled and self.state != AgentState.LOGGED_OUT


def agent_snapshots(
    *, server_id: int, agent_ids: Iterable[int] | None = None, icm_ids: Iterable[str] | None = None
) -> list[AgentSnapshot]:
    """Snapshots of the server's agents (all of them, or those named), in icm id order."""
    agents = Agent.objects.filter(server_id=server_id).prefetch_related("skill_groups").order_by("icm_id")
    if agent_ids is not None:
        agents = agents.filter(pk__in=list(agent_ids))
    if icm_ids is not None:
        agents = agents.filter(icm_id__in=list(icm_ids))
    agents = list(agents)
    held: dict[int, set[str]] = defaultdict(set)
    routed = CollaborationSession.objects.filter(agent__in=agents, state__in=ROUTED_STATES)
    for session_id, agent_id in routed.values_list("pk", "agent_id"):
        held[agent_id].add(str(session_id))
    return [
        AgentSnapshot(
            pk=agent.pk,
            icm_id=agent.icm_id,
            state=agent.state,
            enabled=agent.enabled,
            max_sessions=agent.max_sessions,
            skill_groups=(*sorted(g.icm_id for g in agent.skill_groups.all()), ANY_SKILL_GROUP),
            held=frozenset(held[agent.pk]),
        )
        for agent in agents
    ]


def desired_registration(
    agent: AgentSnapshot, *, known: frozenset[str], besides: frozenset[str] = frozenset()
) -> AgentRegistration | None:
    """What the MB should hold for ``agent``, given ``known``, the sessions the MB holds for
    it; ``None``: nothing (unregister).

    Slots: ``max_sessions`` minus the sessions the agent holds that this MB did not route
    (it does not count them), so ``len(MB sessions) < max`` is exactly "the agent holds
    fewer than ``max_sessions``". No slot left: registered not ready (the protocol's minimum
    is one slot). ``besides`` are sessions to leave out of the count: the in-transit session
    being re-asked of a new MB after a switchover, which may return to this agent.
    A logged-out agent stays registered (not ready) while the MB holds routes of its open
    sessions, because unregistering would release them and silence their hang-up events.
    """
    held = agent.held - besides
    if not agent.logged_in:
        if not held & known:
            return None
        return AgentRegistration(agent.icm_id, agent.skill_groups, max(len(known), 1), NOT_READY)
    slots = agent.max_sessions - len(held - known)
    ready = agent.state == AgentState.READY and slots > 0
    return AgentRegistration(agent.icm_id, agent.skill_groups, max(slots, 1), READY if ready else NOT_READY)


def _stale_routes(agent: AgentSnapshot, known: frozenset[str]) -> list[str]:
    """Routes the MB holds for ``agent`` that belong to nothing: sessions ended, unknown, or
    active with another agent. Queued and in-transit ones are left: a drain or a re-route
    may be between the MB's answer and its own commit."""
    candidates = {sid: as_session_id(sid) for sid in known - agent.held}
    ids = [pk for pk in candidates.values() if pk is not None]
    found = CollaborationSession.objects.filter(pk__in=ids).values_list("pk", "state", "agent_id")
    rows = {str(pk): (state, holder) for pk, state, holder in found}
    stale = []
    for sid in sorted(candidates):
        state, holder = rows.get(sid, (None, None))
        if state in (None, SessionState.ENDED) or (state == SessionState.ACTIVE and holder != agent.pk):
            stale.append(sid)
    return stale


# Requests pipelined to the MB at once by ``sync_agents`` (each must be answered within the
# client's time-out, counted from when it was sent).
SYNC_BATCH = 200


def sync_agents(
    mb: MediaBlenderClient, agents: Iterable[AgentSnapshot], *, registered: Registered, forget: Iterable[str] = ()
) -> Registered:
    """Bring the MB's registrations of ``agents`` in line with the database over ``mb``.

    ``registered`` is the MB's current view (``list_agents``), updated in place and
    returned. Stale routes of each agent are released first; agents in ``forget`` (MB
    registrations the database does not know on this server) are unregistered. The
    requests are pipelined (a switchover registers a thousand agents in a few round
    trips, not a thousand); the MB handles them in order. Raises the adapter's first
    exception once every request has been answered.
    """
    requests: list[tuple[str, dict[str, Any]]] = []
    for icm_id in forget:
        requests.append(("unregister_agent", {"agent_id": icm_id}))
        registered.pop(icm_id, None)
    for agent in agents:
        view = registered.get(agent.icm_id)
        known = frozenset(view["sessions"]) if view else frozenset()
        for session_id in _stale_routes(agent, known):
            requests.append(("release", {"session_id": session_id}))
            known -= {session_id}
        registration = desired_registration(agent, known=known)
        if registration is not None:
            requests.append(("register_agent", registration_args(registration)))
        elif view is not None:
            requests.append(("unregister_agent", {"agent_id": agent.icm_id}))
            registered.pop(agent.icm_id, None)
    failure: client.PeerException | None = None
    for start in range(0, len(requests), SYNC_BATCH):
        batch = requests[start : start + SYNC_BATCH]
        for (op, args), result in zip(batch, mb.call_many(batch), strict=True):
            if isinstance(result, client.PeerError) and result.code == "not_found" and op != "register_agent":
                continue  # already released or unregistered: the state we wanted
            if isinstance(result, client.PeerException):
                failure = failure or result
            elif op == "register_agent":
                registered[args["agent_id"]] = result["agent"]
    if failure is not None:
        raise failure
    return registered


def sync_agents_by_icm_id(mb: MediaBlenderClient, *, server_id: int, icm_ids: Iterable[str]) -> None:
    """Re-sync the agents the MB named (after it chose one the database refused); an id the
    server does not know is unregistered, so the MB stops offering it."""
    wanted = set(icm_ids)
    agents = agent_snapshots(server_id=server_id, icm_ids=wanted)
    unknown = wanted - {a.icm_id for a in agents}
    sync_agents(mb, agents, registered=mb.list_agents(), forget=unknown)


def agent_sync(*, agent_id: int) -> bool:
    """Tell the connected MB what the database says about one agent: registered with its
    skill groups, slots and readiness, or forgotten once logged out with no routes left.

    Returns ``False`` (and changes nothing) when the agent is gone, the link is down or
    the MB cannot be reached: the next switchover re-registers every agent anyway.
    Idempotent; re-registering an agent that stays ready keeps its place in the MB's line.
    """
    server_id = Agent.objects.filter(pk=agent_id).values_list("server_id", flat=True).first()
    target = connected_media_blender(server_id) if server_id is not None else None
    if target is None:
        return False
    try:
        with MediaBlenderClient(target) as mb:
            agents = agent_snapshots(server_id=server_id, agent_ids=[agent_id])
            sync_agents(mb, agents, registered=mb.list_agents())
    except client.PeerException as exc:
        log.info("could not sync agent %s with %s: %s", agent_id, target.name, exc)
        return False
    return True


def agents_reconcile(*, server_id: int) -> bool:
    """Bring every agent of the server in line at the connected MB (the safety net's half of
    :func:`agent_sync`): releases routes of sessions that ended while their release task was
    lost (a worker killed, Redis restarted), so the MB frees the slot and routes again.

    ``False`` when no MB is connected or it cannot be reached. Idempotent.
    """
    target = connected_media_blender(server_id)
    if target is None:
        return False
    try:
        with MediaBlenderClient(target) as mb:
            registered = mb.list_agents()
            sync_agents(mb, agent_snapshots(server_id=server_id), registered=registered)
    except client.PeerException as exc:
        log.info("could not reconcile the agents of server %s with %s: %s", server_id, target.name, exc)
        return False
    return True


def route_release(*, session_id: str, server_id: int) -> int:
    """Release the session's route at the server's Media Blenders (best effort); returns how
    many held one.

    Both peers are asked, the connected one first: after a manual switchover the old MB
    still holds the routes it made. The connected MB is skipped when the session holds a
    live route there (routed again under the current epoch since the release was
    scheduled): that route is the session's, not a leftover.
    """
    session = CollaborationSession.objects.filter(pk=session_id).values("state", "route_epoch").first()
    released = 0
    for peer in media_blender_peers(server_id):
        live_route = (
            session is not None
            and session["state"] in ROUTED_STATES
            and peer.epoch is not None
            and session["route_epoch"] == peer.epoch
        )
        if live_route:
            continue
        timeout = STANDBY_RELEASE_TIMEOUT if peer.epoch is None else client.DEFAULT_TIMEOUT
        released += release_at(peer, session_id, timeout=timeout)
    return released
