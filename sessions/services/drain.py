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
from collections.abc import Iterator

import redis
from redis.exceptions import LockError
from redis.lock import Lock

from common.redis_client import shared_redis
from failover.peering import client
from sessions.choices import SessionState
from sessions.media_blender_client import (
    ANY_SKILL_GROUP,
    MediaBlenderClient,
    MediaBlenderPeer,
    RouteAnswer,
    connected_media_blender,
)
from sessions.models import CollaborationSession
from sessions.services.drain_schedule import KEY_PREFIX, drain_started
from sessions.services.media_blender import sync_agents_by_icm_id
from sessions.services.routes import RouteOutcome, free_agent_exists, session_route_many

log = logging.getLogger(__name__)

# The lock lives this long unless renewed; the drain renews it before every session, so
# it outlives a long drain but not a worker killed in the middle of one (whose queue would
# otherwise wait for the lock to expire).
LOCK_SECONDS = 15
# Sessions asked of the MB in one round trip and recorded in one transaction: a round
# trip and a commit per session made a drain of 1,000 sessions take 7 s (about 1 s in
# batches, bench/queue_drain.py). A batch of 100 holds its row locks (SQLite: the one
# writer lock) for 20-40 ms, short enough for a caller's request or an agent's click.
BATCH_SIZE = 100
# A bound on going round again: each pass is triggered by a real change, but a bug that
# keeps re-requesting must not spin a worker forever.
MAX_PASSES = 10
# Every Redis key of the drain (per server: its lock, "pending" and "scheduled" marks)
# starts with KEY_PREFIX (drain_schedule.py).


class DrainCoordinator:
    """The per-server Redis lock and pending mark. Without Redis every call drains (the
    database keeps it correct; only duplicate work is no longer avoided)."""

    def __init__(self, server_id: int) -> None:
        key = f"{KEY_PREFIX}{server_id}"
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
    drain_started(server_id)  # this drain sees every session committed before now
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
    if not free_agent_exists(server_id):
        # Nothing could be routed: every answer of the MB would be refused by the database.
        # Callers keep arriving while every agent is busy (a queue of thousands); without
        # this, each drain read the whole queue and asked the MB, only to be told no.
        return 0
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
    requests = iter([(session_id, group_icm_id or ANY_SKILL_GROUP) for session_id, group_icm_id in queued])
    try:
        with MediaBlenderClient(target) as mb:
            while batch := _next_batch(requests, exhausted):
                coordinator.keep()
                outcomes = route_queued_sessions(mb, target, server_id=server_id, requests=batch)
                for (session_id, group), outcome in zip(batch, outcomes, strict=True):
                    if isinstance(outcome, client.PeerError):
                        # A refusal about this request (say, an ICM id the MB finds invalid):
                        # the group's other sessions would get the same answer.
                        log.warning("route of session %s refused by %s: %s", session_id, target.name, outcome)
                        exhausted.add(group)
                    elif outcome == RouteOutcome.ROUTED:
                        routed += 1
                    elif outcome is None:
                        exhausted.add(group)
                    elif outcome == RouteOutcome.AGENT_UNAVAILABLE:
                        # The MB's view of that agent was corrected; try this group again.
                        exhausted.add(group)
                        coordinator.request()
                if RouteOutcome.STALE_EPOCH in outcomes:
                    break  # switched over meanwhile; its follow-up drains under the new epoch
    except client.PeerUnavailable as exc:
        log.warning("queue drain of server %s stopped: %s is unreachable (%s)", server_id, target.name, exc)
    except client.PeerError as exc:
        log.warning("queue drain of server %s stopped: %s", server_id, exc)
    return routed


def _next_batch(requests: Iterator[tuple[object, str]], exhausted: set[str]) -> list[tuple[object, str]]:
    """Take the next ``BATCH_SIZE`` sessions from ``requests`` (oldest first) whose skill
    group still has agents."""
    batch: list[tuple[object, str]] = []
    for request in requests:
        if request[1] not in exhausted:
            batch.append(request)
            if len(batch) == BATCH_SIZE:
                break
    return batch


def route_queued_sessions(
    mb: MediaBlenderClient, target: MediaBlenderPeer, *, server_id: int, requests: list[tuple[object, str]]
) -> list[RouteOutcome | None | client.PeerError]:
    """Ask ``mb`` for a route for each ``(session id, skill group)`` (one round trip) and
    record the answers (one transaction); returns each one's outcome, in order: ``None``
    when no agent was available, the ``PeerError`` when the MB refused the request.

    A refused answer is released at the MB unless the session already holds that very
    route. When the database refused the MB's agent, the MB's registration of that agent
    is re-synced at once, so the next pass does not get the same answer.
    """
    assert target.epoch is not None
    answers = mb.route_fresh_many([(str(session_id), group) for session_id, group in requests])
    routes = [
        (session_id, answer.agent_id)
        for (session_id, _), answer in zip(requests, answers, strict=True)
        if isinstance(answer, RouteAnswer)
    ]
    recorded = iter(session_route_many(server_id=server_id, routes=routes, epoch=target.epoch) if routes else ())
    outcomes: list[RouteOutcome | None | client.PeerError] = []
    to_release: list[str] = []
    refused_agents: set[str] = set()
    for answer in answers:
        if not isinstance(answer, RouteAnswer):
            outcomes.append(answer)
            continue
        outcome = next(recorded)
        if outcome not in (RouteOutcome.ROUTED, RouteOutcome.ALREADY_ROUTED):
            to_release.append(answer.session_id)
        if outcome == RouteOutcome.AGENT_UNAVAILABLE:
            refused_agents.add(answer.agent_id)
        outcomes.append(outcome)
    if to_release:
        mb.release_many(to_release)
    if refused_agents:
        sync_agents_by_icm_id(mb, server_id=server_id, icm_ids=refused_agents)
    return outcomes
