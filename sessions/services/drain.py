"""Draining a server's queue through its connected Media Blender, oldest first.

Correctness is in the database: every answer of the MB goes through ``session_route``,
which re-checks under row locks that the session is still queued, that the MB link is
still at the epoch the route was asked under (fencing) and that the agent has a free slot.
A Redis lock per server only keeps two workers from doing the same work at once; a
request that finds it held leaves a "pending" mark, and the holder goes round again, so
no request is lost while a drain is running.
"""

from __future__ import annotations

import contextlib
import logging

import redis
from redis.exceptions import LockError
from redis.lock import Lock

from collabadmin.redis_client import shared_redis
from failover.peering import client
from sessions.choices import SessionState
from sessions.models import CollaborationSession
from sessions.routing import ANY_SKILL_GROUP, MediaBlenderClient, MediaBlenderPeer, connected_media_blender
from sessions.services.media_blender import sync_agents_by_icm_id
from sessions.services.routing import RouteOutcome, session_route

log = logging.getLogger(__name__)

# The lock lives this long unless renewed; the drain renews it before every session, so
# it outlives a long drain but not a worker killed in the middle of one (whose queue would
# otherwise wait for the lock to expire).
LOCK_SECONDS = 15
# A bound on going round again: each pass is triggered by a real change, but a bug that
# keeps re-requesting must not spin a worker forever.
MAX_PASSES = 10


class DrainCoordinator:
    """The per-server Redis lock and pending mark. Without Redis every call drains (the
    database keeps it correct; only duplicate work is no longer avoided)."""

    def __init__(self, server_id: int) -> None:
        key = f"collabadmin:drain:{server_id}"
        self.pending_key = f"{key}:pending"
        self.lock: Lock = shared_redis().lock(key, timeout=LOCK_SECONDS, blocking=False)
        self.available = True

    def request(self) -> None:
        """Ask for a (further) pass; set before trying the lock, so a holder that is just
        finishing sees it."""
        try:
            shared_redis().set(self.pending_key, 1, ex=LOCK_SECONDS)
        except redis.RedisError:
            self.available = False

    def acquire(self) -> bool:
        if not self.available:
            return True
        try:
            if not self.lock.acquire():
                return False
            shared_redis().delete(self.pending_key)
        except redis.RedisError:
            log.warning("drain lock unavailable (Redis); draining without it", exc_info=True)
            self.available = False
        return True

    def keep(self) -> None:
        """Renew the lock's time-to-live (between sessions of a long drain)."""
        if self.available:
            with contextlib.suppress(redis.RedisError, LockError):
                self.lock.reacquire()

    def release(self) -> None:
        if not self.available:
            return
        try:
            self.lock.release()  # only if still ours: an expired one may be another worker's
        except (redis.RedisError, LockError):
            log.info("drain lock already expired or unavailable", exc_info=True)

    def pending(self) -> bool:
        if not self.available:
            return False
        try:
            return bool(shared_redis().exists(self.pending_key))
        except redis.RedisError:
            return False


def queue_drain(*, server_id: int) -> int:
    """Route the server's queued sessions, oldest first (``queued_at``, then id), through its
    connected MB while it has agents; return how many went in transit.

    For each session the MB is asked outside any transaction, then ``session_route``
    records the answer or refuses it, in which case the route is released at the MB. The
    first ``no_agent_available`` for a skill group stops that group (the rest stay queued,
    in order); other groups go on. An unreachable MB ends the drain: the monitor switches
    over and the switchover's follow-up drains again. Idempotent and safe to run
    concurrently; does nothing while the link is down.
    """
    coordinator = DrainCoordinator(server_id)
    coordinator.request()
    total = 0
    for _ in range(MAX_PASSES):
        if not coordinator.acquire():
            return total  # the holder will see our pending mark
        try:
            total += _drain_pass(server_id, coordinator)
        finally:
            coordinator.release()
        if not coordinator.pending():
            return total
    log.warning("queue of server %s still asked for after %s passes", server_id, MAX_PASSES)
    return total


def _drain_pass(server_id: int, coordinator: DrainCoordinator) -> int:
    target = connected_media_blender(server_id)
    if target is None:
        return 0
    queued = list(
        CollaborationSession.objects.filter(server_id=server_id, state=SessionState.QUEUED)
        .order_by("queued_at", "pk")
        .values_list("pk", "skill_group__icm_id")
    )
    routed = 0
    exhausted: set[str] = set()
    if not queued:
        return 0
    try:
        with MediaBlenderClient(target) as mb:
            for session_id, group_icm_id in queued:
                group = group_icm_id or ANY_SKILL_GROUP
                if group in exhausted:
                    continue
                coordinator.keep()
                try:
                    outcome = route_queued_session(
                        mb, target, server_id=server_id, session_id=session_id, skill_group=group
                    )
                except client.PeerError as exc:
                    # A refusal about this request (say, an ICM id the MB finds invalid):
                    # the group's other sessions would get the same answer.
                    log.warning("route of session %s refused by %s: %s", session_id, target.name, exc)
                    exhausted.add(group)
                    continue
                if outcome == RouteOutcome.ROUTED:
                    routed += 1
                elif outcome == RouteOutcome.STALE_EPOCH:
                    break  # switched over meanwhile; its follow-up drains under the new epoch
                elif outcome is None:
                    exhausted.add(group)
                elif outcome == RouteOutcome.AGENT_UNAVAILABLE:
                    # The MB's view of that agent was corrected; try this group again.
                    exhausted.add(group)
                    coordinator.request()
    except client.PeerUnavailable as exc:
        log.warning("queue drain of server %s stopped: %s is unreachable (%s)", server_id, target.name, exc)
    except client.PeerError as exc:
        log.warning("queue drain of server %s stopped: %s", server_id, exc)
    return routed


def route_queued_session(
    mb: MediaBlenderClient, target: MediaBlenderPeer, *, server_id: int, session_id: object, skill_group: str
) -> RouteOutcome | None:
    """Ask ``mb`` for a route and record it; ``None`` when no agent is available.

    A refused answer is released at the MB unless the session already holds that very
    route. When the database refused the MB's agent, the MB's registration of that agent
    is re-synced at once, so the next pass does not get the same answer.
    """
    assert target.epoch is not None
    answer = mb.route_fresh(str(session_id), skill_group)
    if answer is None:
        return None
    outcome = session_route(session_id=session_id, agent_icm_id=answer.agent_id, epoch=target.epoch)
    if outcome not in (RouteOutcome.ROUTED, RouteOutcome.ALREADY_ROUTED):
        mb.release(answer.session_id)
    if outcome == RouteOutcome.AGENT_UNAVAILABLE:
        sync_agents_by_icm_id(mb, server_id=server_id, icm_ids=[answer.agent_id])
    return outcome
