"""The Media Blender conversation: which MB a server is connected to, and what we ask it.

Only ``failover.peering.client`` reaches the peer (docs/peer-protocol.md section 8), so a
real Media Blender integration replaces that adapter, not this module. Everything here is
either network I/O or a plain read of the link: callers must not hold a database
transaction open around it (slow network I/O never runs inside one). The services that change sessions live in
``sessions.services``; this module never writes to the database.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from failover.choices import PeerConnection, PeerKind
from failover.models import Peer
from failover.peering import client

log = logging.getLogger(__name__)

# Sessions asked without a skill group go to any ready agent: every agent is registered
# with this extra group. Dots are legal in protocol ids and absent from ICM ids.
ANY_SKILL_GROUP: Final = "collab.any"
READY: Final = "ready"
NOT_READY: Final = "not_ready"
# Per request; a Media Blender answers in milliseconds, so two seconds means it is sick.
DEFAULT_TIMEOUT: Final = 2.0
MEDIA_BLENDER_KIND: Final = "media-blender"


@dataclass(frozen=True)
class MediaBlenderPeer:
    """Where one Media Blender of a server listens; ``epoch`` is set when it is the connected one."""

    peer_id: int
    name: str
    host: str
    port: int
    epoch: int | None = None


@dataclass(frozen=True)
class AgentRegistration:
    """What the Media Blender should hold for one agent (the ``register_agent`` arguments)."""

    agent_id: str
    skill_groups: tuple[str, ...]
    max_sessions: int
    state: str


@dataclass(frozen=True)
class RouteAnswer:
    """The Media Blender's choice of agent for a session."""

    session_id: str
    agent_id: str
    existing: bool


def _as_peer(peer: Peer) -> MediaBlenderPeer:
    return MediaBlenderPeer(
        peer_id=peer.pk,
        name=peer.name,
        host=peer.host,
        port=peer.port,
        epoch=peer.connected_epoch if peer.connection == PeerConnection.CONNECTED else None,
    )


def connected_media_blender(server_id: int) -> MediaBlenderPeer | None:
    """The Media Blender connected for ``server_id`` now, with the link epoch it was
    connected under (its ``connected_epoch``, equal to ``Link.epoch`` by the switchover's
    rule); ``None`` while the link is down. A plain read: the epoch is the fencing token a
    service re-checks under the link's row lock before it believes an answer."""
    peer = Peer.objects.filter(
        server_id=server_id, kind=PeerKind.MEDIA_BLENDER, connection=PeerConnection.CONNECTED
    ).first()
    return _as_peer(peer) if peer is not None and peer.connected_epoch is not None else None


def media_blender_peers(server_id: int) -> list[MediaBlenderPeer]:
    """Both Media Blenders of the server, the connected one first."""
    peers = Peer.objects.filter(server_id=server_id, kind=PeerKind.MEDIA_BLENDER)
    return sorted((_as_peer(p) for p in peers), key=lambda p: (p.epoch is None, p.name))


def registration_args(registration: AgentRegistration) -> dict[str, Any]:
    """The arguments of ``register_agent`` for ``registration``."""
    return {
        "agent_id": registration.agent_id,
        "skill_groups": list(registration.skill_groups),
        "max_sessions": registration.max_sessions,
        "state": registration.state,
    }


class MediaBlenderClient(client.SyncPeerConnection):
    """One held connection to a Media Blender for a series of requests from synchronous
    code (see ``client.SyncPeerConnection``). Raises ``client.PeerUnavailable`` when the peer
    cannot be reached or does not answer within ``timeout`` (the request may or may not have
    been executed) and ``client.PeerError`` for a refusal the methods below do not turn into
    a value.
    """

    expect_kind = MEDIA_BLENDER_KIND

    def __init__(self, peer: MediaBlenderPeer, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(peer, timeout=timeout)

    # -- agents ---------------------------------------------------------------------------

    def list_agents(self) -> dict[str, dict[str, Any]]:
        """Registered agents by agent id, each with its ``sessions`` (the routes it holds here)."""
        return {agent["agent_id"]: agent for agent in self.call("list_agents")["agents"]}

    def register_agent(self, registration: AgentRegistration) -> dict[str, Any]:
        """Register or re-register (the MB keeps the agent's routes); returns the MB's view of it."""
        return self.call("register_agent", **registration_args(registration))["agent"]

    def unregister_agent(self, agent_id: str) -> list[str]:
        """Forget the agent (the MB releases its routes, returned); an unknown agent is not an error."""
        try:
            return list(self.call("unregister_agent", agent_id=agent_id)["released"])
        except client.PeerError as exc:
            if exc.code == "not_found":
                return []
            raise

    # -- routes ---------------------------------------------------------------------------

    def route(self, session_id: str, skill_group: str) -> RouteAnswer | None:
        """Ask for an agent; ``None`` when no ready agent of the group has a free slot."""
        (answer,) = self.route_many([(session_id, skill_group)])
        if isinstance(answer, client.PeerError):
            raise answer
        return answer

    def route_many(self, requests: Sequence[tuple[str, str]]) -> list[RouteAnswer | None | client.PeerError]:
        """``route`` for each ``(session_id, skill_group)``, all in one round trip, in order
        (the MB answers them in that order, so the oldest session gets the first agent).
        A refusal other than ``no_agent_available`` comes back as the ``PeerError`` in that
        request's place; an unreachable MB raises ``PeerUnavailable`` for the lot.
        """
        results = self.call_many([("route", {"session_id": sid, "skill_group": group}) for sid, group in requests])
        answers: list[RouteAnswer | None | client.PeerError] = []
        for (session_id, _), result in zip(requests, results, strict=True):
            if isinstance(result, client.PeerUnavailable):
                raise result
            if isinstance(result, client.PeerError):
                answers.append(None if result.code == "no_agent_available" else result)
                continue
            assert not isinstance(result, client.PeerException)
            answers.append(
                RouteAnswer(session_id=session_id, agent_id=str(result["agent_id"]), existing=bool(result["existing"]))
            )
        return answers

    def route_fresh_many(self, requests: Sequence[tuple[str, str]]) -> list[RouteAnswer | None | client.PeerError]:
        """``route_many``, then ``route_fresh``'s rule for any answer that is a route the MB
        already held (released and asked afresh, one by one: they are rare leftovers)."""
        answers = self.route_many(requests)
        for index, ((session_id, skill_group), answer) in enumerate(zip(requests, answers, strict=True)):
            if isinstance(answer, RouteAnswer) and answer.existing:
                self.release(session_id)
                answers[index] = self.route(session_id, skill_group)
        return answers

    def route_fresh(self, session_id: str, skill_group: str) -> RouteAnswer | None:
        """``route``, making sure the answer is a new route whose ``route_confirmed`` is still to come.

        A route the MB already holds for the session belongs to an attempt we gave up on (a
        reply lost to a time-out, a requeue whose release failed, an earlier connection of
        this MB). Its confirmation may have been sent while the session was not waiting for
        it and will not be sent again, so it is released and asked for afresh.
        """
        answer = self.route(session_id, skill_group)
        if answer is not None and answer.existing:
            self.release(session_id)
            answer = self.route(session_id, skill_group)
        return answer

    def release(self, session_id: str) -> bool:
        """End the session's route here; ``False`` when this MB holds none for it."""
        try:
            self.call("release", session_id=session_id)
        except client.PeerError as exc:
            if exc.code == "not_found":
                return False
            raise
        return True

    def release_many(self, session_ids: Sequence[str]) -> None:
        """``release`` each of them in one round trip; routes the MB does not hold are fine."""
        results = self.call_many([("release", {"session_id": session_id}) for session_id in session_ids])
        for result in results:
            if isinstance(result, client.PeerError) and result.code == "not_found":
                continue
            if isinstance(result, client.PeerException):
                raise result

    def list_routes(self) -> list[dict[str, Any]]:
        return list(self.call("list_routes")["routes"])


def release_at(peer: MediaBlenderPeer, session_id: str, *, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Release the session's route at one peer, best effort: ``True`` if it held one.

    An unreachable peer is logged and reported as ``False``: a dead MB holds nothing, and a
    live one that missed the release only wastes a slot until the agent is next synced.
    """
    try:
        with MediaBlenderClient(peer, timeout=timeout) as mb:
            return mb.release(session_id)
    except client.PeerException as exc:
        log.info("could not release session %s at %s: %s", session_id, peer.name, exc)
        return False
