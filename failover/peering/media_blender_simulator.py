"""The Media Blender (MB) simulator.

Holds the agents' ready registrations, routes sessions to available agents, confirms each
route with a ``route_confirmed`` event shortly afterwards, reports the caller hanging up
(``phone_hung_up``) and its own ICM connection (side A/B). State is in memory: a real MB
forgets registrations when it restarts, which is why the server re-registers agents after
a switchover.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from . import protocol
from .simulator import Args, OpError, PeerSimulator, op

NO_AGENT_AVAILABLE = "no_agent_available"
READY = "ready"
NOT_READY = "not_ready"
ICM_SIDES = ("A", "B", "none")
DEFAULT_CONFIRM_DELAY_MS = 20


@dataclass
class Agent:
    """An agent registered with the MB."""

    agent_id: str
    skill_groups: list[str]
    max_sessions: int
    state: str = NOT_READY
    # Ordering key for "longest available": lower means available for longer. A counter,
    # not a clock, so two changes in the same clock tick still have a strict order.
    available_seq: int = 0
    ready_since: float | None = None
    sessions: set[str] = field(default_factory=set)

    def can_take(self, skill_group: str) -> bool:
        return self.state == READY and skill_group in self.skill_groups and len(self.sessions) < self.max_sessions

    def as_dict(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "skill_groups": self.skill_groups,
            "max_sessions": self.max_sessions,
            "state": self.state,
            "ready_since": self.ready_since,
            "sessions": sorted(self.sessions),
        }


@dataclass
class Route:
    """A session routed to an agent; ``phone`` becomes ``hung_up`` when the caller hangs up."""

    session_id: str
    agent_id: str
    skill_group: str
    routed_at: float
    confirmed: bool = False
    phone: str = "connected"

    def as_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "agent_id": self.agent_id,
            "skill_group": self.skill_group,
            "routed_at": self.routed_at,
            "confirmed": self.confirmed,
            "phone": self.phone,
        }


class MediaBlender(PeerSimulator):
    """Media Blender simulator (kind ``media-blender``); see docs/peer-protocol.md."""

    kind = "media-blender"

    def __init__(
        self,
        *,
        name: str,
        host: str = "127.0.0.1",
        port: int = 0,
        confirm_delay_ms: int = DEFAULT_CONFIRM_DELAY_MS,
        icm_side: str | None = "A",
    ) -> None:
        super().__init__(name=name, host=host, port=port)
        self.agents: dict[str, Agent] = {}
        self.routes: dict[str, Route] = {}
        self.confirm_delay_ms = confirm_delay_ms
        self.icm_side = icm_side
        self._seq = itertools.count(1)
        self._confirm_timers: dict[str, asyncio.TimerHandle] = {}

    async def stop(self) -> None:
        for timer in self._confirm_timers.values():
            timer.cancel()
        self._confirm_timers.clear()
        await super().stop()

    def _agent(self, agent_id: str) -> Agent:
        agent = self.agents.get(agent_id)
        if agent is None:
            raise OpError(protocol.NOT_FOUND, f"agent '{agent_id}' is not registered")
        return agent

    def _route(self, session_id: str) -> Route:
        route = self.routes.get(session_id)
        if route is None:
            raise OpError(protocol.NOT_FOUND, f"session '{session_id}' is not routed")
        return route

    def _set_state(self, agent: Agent, state: str) -> None:
        if state == READY and agent.state != READY:
            agent.available_seq = next(self._seq)
            agent.ready_since = time.time()
        elif state == NOT_READY:
            agent.ready_since = None
        agent.state = state

    # -- agents -------------------------------------------------------------------------

    @op("register_agent", "agent_id", "skill_groups", "max_sessions", "state")
    def op_register_agent(self, args: Args) -> dict[str, Any]:
        """Register (or re-register, keeping its sessions) an agent; state defaults to not_ready."""
        agent_id = args.identifier("agent_id")
        skill_groups = args.identifier_list("skill_groups")
        max_sessions = args.opt(args.integer, "max_sessions", minimum=1, maximum=1000) or 1
        state = args.opt(args.choice, "state", choices=(READY, NOT_READY))
        agent = self.agents.get(agent_id)
        if agent is None:
            agent = self.agents[agent_id] = Agent(agent_id, skill_groups, max_sessions)
        else:
            agent.skill_groups, agent.max_sessions = skill_groups, max_sessions
        if state is not None:
            self._set_state(agent, state)
        return {"agent": agent.as_dict()}

    @op("set_agent_state", "agent_id", "state")
    def op_set_agent_state(self, args: Args) -> dict[str, Any]:
        agent = self._agent(args.identifier("agent_id"))
        self._set_state(agent, args.choice("state", (READY, NOT_READY)))
        return {"agent": agent.as_dict()}

    @op("unregister_agent", "agent_id")
    def op_unregister_agent(self, args: Args) -> dict[str, Any]:
        """Forget an agent; its routes are released and returned."""
        agent = self._agent(args.identifier("agent_id"))
        released = sorted(agent.sessions)
        for session_id in released:
            self._release(session_id)
        del self.agents[agent.agent_id]
        return {"released": released}

    @op("list_agents")
    def op_list_agents(self, args: Args) -> dict[str, Any]:
        return {"agents": [a.as_dict() for a in sorted(self.agents.values(), key=lambda a: a.agent_id)]}

    # -- routing ------------------------------------------------------------------------

    @op("route", "session_id", "skill_group")
    def op_route(self, args: Args) -> dict[str, Any]:
        """Route a session to the ready agent of the skill group with the fewest sessions,
        then the longest available. Idempotent per session: a retried route (e.g. after a
        timeout) gets the agent already chosen, with ``existing: true``.
        """
        session_id = args.identifier("session_id")
        skill_group = args.identifier("skill_group")
        if (route := self.routes.get(session_id)) is not None:
            return {"session_id": session_id, "agent_id": route.agent_id, "existing": True}
        candidates = [a for a in self.agents.values() if a.can_take(skill_group)]
        if not candidates:
            raise OpError(NO_AGENT_AVAILABLE, f"no ready agent with a free slot in skill group '{skill_group}'")
        agent = min(candidates, key=lambda a: (len(a.sessions), a.available_seq, a.agent_id))
        agent.sessions.add(session_id)
        self.routes[session_id] = Route(session_id, agent.agent_id, skill_group, time.time())
        loop = asyncio.get_running_loop()
        self._confirm_timers[session_id] = loop.call_later(
            self.confirm_delay_ms / 1000, self._confirm, session_id, agent.agent_id
        )
        return {"session_id": session_id, "agent_id": agent.agent_id, "existing": False}

    def _confirm(self, session_id: str, agent_id: str) -> None:
        self._confirm_timers.pop(session_id, None)
        route = self.routes.get(session_id)
        if route is None or route.agent_id != agent_id:
            return  # released before the confirmation was due
        route.confirmed = True
        self.broadcast(protocol.event("route_confirmed", session_id=session_id, agent_id=agent_id))

    def _release(self, session_id: str) -> Route:
        route = self.routes.pop(session_id)
        if (timer := self._confirm_timers.pop(session_id, None)) is not None:
            timer.cancel()
        agent = self.agents.get(route.agent_id)
        if agent is not None:
            agent.sessions.discard(session_id)
            # The agent has just become available again: it goes to the back of the line.
            agent.available_seq = next(self._seq)
        return route

    @op("release", "session_id")
    def op_release(self, args: Args) -> dict[str, Any]:
        route = self._release(self._route(args.identifier("session_id")).session_id)
        return {"session_id": route.session_id, "agent_id": route.agent_id}

    @op("list_routes")
    def op_list_routes(self, args: Args) -> dict[str, Any]:
        return {"routes": [r.as_dict() for r in sorted(self.routes.values(), key=lambda r: r.routed_at)]}

    @op("configure", "confirm_delay_ms")
    def op_configure(self, args: Args) -> dict[str, Any]:
        """Settings of the simulator itself (not of a real MB)."""
        delay = args.opt(args.integer, "confirm_delay_ms", maximum=600_000)
        if delay is not None:
            self.confirm_delay_ms = delay
        return {"confirm_delay_ms": self.confirm_delay_ms}

    # -- the phone leg and the ICM side (control ops) -----------------------------------

    @op("hangup", "session_id")
    def op_hangup(self, args: Args) -> dict[str, Any]:
        """The caller hangs up the phone: the route stays (the web session is not ended)."""
        route = self._route(args.identifier("session_id"))
        route.phone = "hung_up"
        self.emit("phone_hung_up", session_id=route.session_id, agent_id=route.agent_id)
        return {"session_id": route.session_id, "agent_id": route.agent_id}

    def _icm_status(self) -> dict[str, Any]:
        return {"side": self.icm_side, "connected": self.icm_side is not None}

    @op("icm_status")
    def op_icm_status(self, args: Args) -> dict[str, Any]:
        return self._icm_status()

    @op("set_icm_side", "side")
    def op_set_icm_side(self, args: Args) -> dict[str, Any]:
        side = args.choice("side", ICM_SIDES)
        previous = self.icm_side
        self.icm_side = None if side == "none" else side
        if self.icm_side != previous:
            self.emit("icm_side_changed", previous=previous, **self._icm_status())
        return self._icm_status()
