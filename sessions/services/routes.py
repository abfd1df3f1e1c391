"""Session transitions driven by the Media Blender: routed, confirmed, phone hung up, requeued.

Each service runs in one transaction, locks the session row, checks that the change still
applies (compare-and-set: the MB's answers and events may be late, duplicated or come from
a peer that is no longer connected), writes one audit entry and publishes the session on
commit. They never talk to the MB themselves: callers do that outside the transaction and
hand the answer in, and these return an outcome instead of raising, because a stale
answer is an ordinary event, not an error.

Lock order, shared with the switchover and server-failure services: link, then agent,
then session.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from django.db import transaction
from django.db.models import Case, Count, F, Q, Value, When
from django.utils import timezone

from common import live
from common.actors import MEDIA_BLENDER, ROUTER, Actor
from failover.choices import AuditAction, LinkState, PeerConnection, PeerKind
from failover.models import AuditEntry, Link, Peer
from failover.services.audit import audit_entry, audit_record, audit_record_many
from sessions.choices import ROUTED_STATES, AgentState, EndReason, PhoneLeg, SessionState
from sessions.models import Agent, CollaborationSession
from sessions.services import followups
from sessions.services.lifecycle import check_transition, publish_session, session_end


class RouteOutcome(StrEnum):
    ROUTED = "routed"
    # The session already holds exactly this route: the MB's route is ours, keep it.
    ALREADY_ROUTED = "already_routed"
    # No longer waiting for a route (ended, routed elsewhere, moved to another server).
    NOT_ROUTABLE = "not_routable"
    # The MB link switched since the route was asked: the answer is fenced off.
    STALE_EPOCH = "stale_epoch"
    # The database says this agent cannot take it (unknown, not ready, full, wrong skill).
    AGENT_UNAVAILABLE = "agent_unavailable"


class ConfirmOutcome(StrEnum):
    ACTIVATED = "activated"
    # Possibly ahead of the route's own commit (the MB confirms ~20 ms after answering):
    # the caller may try again shortly.
    EARLY = "early"
    IGNORED = "ignored"


def as_session_id(value: object) -> uuid.UUID | None:
    """The session primary key named by an MB message, or ``None`` if it names none."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def publish_session_change(session: CollaborationSession, *, previous_agent_id: int | None) -> None:
    """``publish_session``, also telling the agent that just lost the session (requeue,
    re-route) that it is no longer theirs: its id and state only, not the caller's details
    nor who has it now (the desktop re-renders its own sessions from the server)."""
    publish_session(session)
    if previous_agent_id and previous_agent_id != session.agent_id:
        gone = {"id": str(session.pk), "state": session.state}
        live.publish("session.changed", gone, groups=[live.agent_group(previous_agent_id)])


def agent_load(agent_id: int, *, besides: object = None) -> int:
    """How many sessions the agent holds (in transit or active), not counting ``besides``."""
    return CollaborationSession.objects.filter(agent_id=agent_id, state__in=ROUTED_STATES).exclude(pk=besides).count()


def free_agent_exists(server_id: int) -> bool:
    """Whether any agent of the server could take a session now (ready, enabled, with a
    free slot), skill groups aside: when none can, no route the MB offers will be recorded."""
    return (
        Agent.objects.filter(server_id=server_id, enabled=True, state=AgentState.READY)
        .annotate(load=Count("sessions", filter=Q(sessions__state__in=ROUTED_STATES)))
        .filter(load__lt=F("max_sessions"))
        .exists()
    )


def agent_can_take(agent: Agent, session: CollaborationSession) -> bool:
    """Ready, enabled, of the session's server and skill group, with a free slot."""
    if session.skill_group_id is None:
        in_group = session.any_skill_group
    else:
        in_group = agent.skill_groups.filter(pk=session.skill_group_id).exists()
    return _can_take(agent, session, in_group=in_group, load=agent_load(agent.pk, besides=session.pk))


def _can_take(agent: Agent, session: CollaborationSession, *, in_group: bool, load: int) -> bool:
    """``agent_can_take`` on facts read beforehand (``load`` leaves ``session`` out)."""
    if not agent.enabled or agent.state != AgentState.READY or agent.server_id != session.server_id:
        return False
    return in_group and load < agent.max_sessions


def session_route(*, session_id: object, agent_icm_id: str, epoch: int, actor: Actor = ROUTER) -> RouteOutcome:
    """Record the MB's answer to ``route``: the session goes in transit to that agent.

    Applies to a queued session, and to one in transit under an older epoch (re-asked of a
    newly connected MB after a switchover). Fencing: nothing changes unless the server's MB
    link is still connected at ``epoch``, the epoch the route was asked under; the link row
    is locked, so a switchover cannot slip in before the commit. The database is the last
    word on capacity: an agent never holds more than ``max_sessions`` sessions whatever an
    MB believes. On ``ROUTED``: ``agent``, ``routed_at``, ``route_epoch`` set, a
    ``session.routed`` audit entry, a live update. Any other outcome changes nothing; the
    caller then releases the MB's route unless it is ``ALREADY_ROUTED``.
    """
    server_id = CollaborationSession.objects.filter(pk=session_id).values_list("server_id", flat=True).first()
    if server_id is None:
        return RouteOutcome.NOT_ROUTABLE
    (outcome,) = session_route_many(server_id=server_id, routes=[(session_id, agent_icm_id)], epoch=epoch, actor=actor)
    return outcome


class _RouteBatch:
    """What one batch of routes reads under its locks, kept up to date as routes are applied."""

    def __init__(self, server_id: int, routes: Sequence[tuple[object, str]]) -> None:
        # Lock order (after the link): agents, then sessions, each by primary key, so two
        # batches never wait for each other in a cycle.
        self.agents = {
            agent.icm_id: agent
            for agent in Agent.objects.select_for_update()
            .filter(server_id=server_id, icm_id__in={icm_id for _, icm_id in routes})
            .order_by("pk")
        }
        ids = {pk for pk in (as_session_id(session_id) for session_id, _ in routes) if pk is not None}
        self.sessions = {
            session.pk: session
            for session in CollaborationSession.objects.select_for_update().filter(pk__in=ids).order_by("pk")
        }
        agent_ids = [agent.pk for agent in self.agents.values()]
        held = (
            CollaborationSession.objects.filter(agent_id__in=agent_ids, state__in=ROUTED_STATES)
            .order_by()
            .values("agent_id")
            .annotate(n=Count("pk"))
            .values_list("agent_id", "n")
        )
        self.loads: dict[int, int] = dict(held)
        memberships = Agent.skill_groups.through.objects.filter(agent_id__in=agent_ids)
        self.members = set(memberships.values_list("agent_id", "skillgroup_id"))

    def can_take(self, agent: Agent, session: CollaborationSession) -> bool:
        if session.skill_group_id is None:
            # Only a caller who asked for any agent may go to any agent; a session that
            # somehow has no skill group otherwise goes to nobody (the database's
            # constraint says it cannot happen while it is open).
            in_group = session.any_skill_group
        else:
            in_group = (agent.pk, session.skill_group_id) in self.members
        counted = session.agent_id == agent.pk and session.state in ROUTED_STATES
        load = self.loads.get(agent.pk, 0) - (1 if counted else 0)
        return _can_take(agent, session, in_group=in_group, load=load)

    def move(self, session: CollaborationSession, agent: Agent) -> None:
        """Count ``session`` with ``agent`` instead of the agent that held it (if any)."""
        if session.state in ROUTED_STATES and session.agent_id is not None:
            self.loads[session.agent_id] = self.loads.get(session.agent_id, 0) - 1
        self.loads[agent.pk] = self.loads.get(agent.pk, 0) + 1


@transaction.atomic
def session_route_many(
    *, server_id: int, routes: Sequence[tuple[object, str]], epoch: int, actor: Actor = ROUTER
) -> list[RouteOutcome]:
    """Record the MB's answers to a series of ``route`` requests for ``server_id``'s
    sessions, ``(session id, agent ICM id)`` each, in one transaction; returns each one's
    outcome, in order: what :func:`session_route` would have said of it had they been
    recorded one after another (a queue drain records a batch of answers at a time).

    The link is locked and checked once (every outcome is ``STALE_EPOCH`` if it moved on),
    then the agents and sessions named, in primary-key order; loads and skill groups are
    read once and kept up to date as the routes are applied. One bulk update, one bulk
    insert of audit entries, one live update per routed session.
    """
    link = Link.objects.select_for_update().get(server_id=server_id, kind=PeerKind.MEDIA_BLENDER)
    if link.state != LinkState.CONNECTED or link.epoch != epoch:
        return [RouteOutcome.STALE_EPOCH] * len(routes)
    batch = _RouteBatch(server_id, routes)
    outcomes: list[RouteOutcome] = []
    changed: dict[uuid.UUID, CollaborationSession] = {}
    entries = []
    now = timezone.now()
    for session_id, agent_icm_id in routes:
        pk = as_session_id(session_id)
        session = batch.sessions.get(pk) if pk is not None else None
        agent = batch.agents.get(agent_icm_id)
        refused = _refusal(batch, server_id, epoch, session, agent)
        if refused is not None:
            outcomes.append(refused)
            continue
        entries.append(_route_one(batch, session, agent, epoch=epoch, now=now, actor=actor))
        changed[session.pk] = session
        outcomes.append(RouteOutcome.ROUTED)
    if changed:
        # One UPDATE: everything but the agent is the same for the batch (bulk_update would
        # build a CASE per field and row, most of a drain's time).
        agent_of = Case(*(When(pk=pk, then=Value(session.agent_id)) for pk, session in changed.items()))
        CollaborationSession.objects.filter(pk__in=changed).update(
            state=SessionState.IN_TRANSIT, agent_id=agent_of, routed_at=now, route_epoch=epoch
        )
    audit_record_many(entries)
    return outcomes


def _refusal(
    batch: _RouteBatch,
    server_id: int,
    epoch: int,
    session: CollaborationSession | None,
    agent: Agent | None,
) -> RouteOutcome | None:
    """Why the MB's answer routing ``session`` to ``agent`` is not applied, or ``None``."""
    if session is None or session.server_id != server_id:
        return RouteOutcome.NOT_ROUTABLE  # gone, or adopted by another server
    holds_this_route = session.state in ROUTED_STATES and session.route_epoch == epoch
    if agent is not None and holds_this_route and session.agent_id == agent.pk:
        return RouteOutcome.ALREADY_ROUTED
    if session.state != SessionState.QUEUED and not _rerouting(session, epoch):
        return RouteOutcome.NOT_ROUTABLE
    if agent is None or not batch.can_take(agent, session):
        return RouteOutcome.AGENT_UNAVAILABLE
    return None


def _rerouting(session: CollaborationSession, epoch: int) -> bool:
    """In transit through an earlier link epoch: the newly connected MB routes it again."""
    return session.state == SessionState.IN_TRANSIT and session.route_epoch != epoch


def _route_one(
    batch: _RouteBatch, session: CollaborationSession, agent: Agent, *, epoch: int, now: datetime, actor: Actor
) -> AuditEntry:
    """Put ``session`` in transit to ``agent`` in memory (the caller saves the batch in one
    UPDATE), tell the desktops, and return its audit entry."""
    rerouting = _rerouting(session, epoch)
    if not rerouting:
        check_transition(session, SessionState.IN_TRANSIT)
    before = {"state": session.state, "agent": session.agent_id, "route_epoch": session.route_epoch}
    previous_agent_id = session.agent_id
    batch.move(session, agent)
    session.state = SessionState.IN_TRANSIT
    session.agent = agent
    # On a re-route the transit timeout starts again: the new MB gets the whole timeout.
    session.routed_at = now
    session.route_epoch = epoch
    after = {"state": session.state, "agent": agent.pk, "agent_icm_id": agent.icm_id, "route_epoch": epoch}
    reason = "re-routed by the newly connected Media Blender" if rerouting else ""
    publish_session_change(session, previous_agent_id=previous_agent_id)
    return audit_entry(
        actor=actor, action=AuditAction.SESSION_ROUTED, target=session, reason=reason, before=before, after=after
    )


def _connected_epoch(peer_id: int) -> tuple[int | None, int | None]:
    """(server, epoch) of a connected Media Blender peer; (server, None) for any other peer."""
    peer = (
        Peer.objects.filter(pk=peer_id, kind=PeerKind.MEDIA_BLENDER)
        .values("server_id", "connection", "connected_epoch")
        .first()
    )
    if peer is None:
        return None, None
    connected = peer["connection"] == PeerConnection.CONNECTED
    return peer["server_id"], peer["connected_epoch"] if connected else None


def _lock_session(pk: uuid.UUID, *, server_id: int) -> CollaborationSession | None:
    # The row alone, no join: after waiting for a concurrent route's commit, PostgreSQL
    # re-checks only the locked row, and an outer-joined agent would come back empty.
    return CollaborationSession.objects.select_for_update().filter(pk=pk, server_id=server_id).first()


def _icm_id_of(agent_id: int | None) -> str | None:
    return Agent.objects.filter(pk=agent_id).values_list("icm_id", flat=True).first() if agent_id else None


def session_confirm_route(*, session_id: object, agent_icm_id: str, peer_id: int) -> ConfirmOutcome:
    """The MB pushed ``route_confirmed``: an in-transit session becomes active.

    Only from the peer connected for the session's server now, for the route asked under
    that connection (``route_epoch`` is its epoch) and to the same agent: an event from a
    standby, from a stale connection or about an older route is ``IGNORED``. ``EARLY``
    means the session is not (yet) in transit under that epoch, which happens when the
    event overtakes the commit of the route that caused it; nothing changes and the
    caller may retry. On ``ACTIVATED``: ``activated_at``, the phone leg ``connected``
    (unless the caller already hung up), a ``session.activated`` audit entry, a live update.
    """
    (outcome,) = session_confirm_routes([(session_id, agent_icm_id, peer_id)])
    return outcome


@transaction.atomic
def session_confirm_routes(confirmations: Sequence[tuple[object, str, int]]) -> list[ConfirmOutcome]:
    """:func:`session_confirm_route` for each ``(session id, agent ICM id, peer id)``, in
    one transaction, in order; returns each one's outcome. The monitor hands in the
    confirmations that arrived together: after a switchover a Media Blender confirms a
    thousand routes within a second, and a write transaction each kept SQLite's single
    writer lock from the queue drain for most of it. The sessions are locked in
    primary-key order and changed with one update; one audit insert."""
    epochs = {peer_id: _connected_epoch(peer_id) for peer_id in {peer_id for _, _, peer_id in confirmations}}
    ids = {pk for pk in (as_session_id(session_id) for session_id, _, _ in confirmations) if pk is not None}
    # The rows alone, no join (see _lock_session).
    sessions = {s.pk: s for s in CollaborationSession.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
    icm_ids = dict(Agent.objects.filter(pk__in={s.agent_id for s in sessions.values()}).values_list("pk", "icm_id"))
    now = timezone.now()
    outcomes: list[ConfirmOutcome] = []
    activated: list[CollaborationSession] = []
    for session_id, agent_icm_id, peer_id in confirmations:
        server_id, epoch = epochs[peer_id]
        pk = as_session_id(session_id)
        session = sessions.get(pk) if pk is not None else None
        if session is None or server_id is None or epoch is None or session.server_id != server_id:
            outcomes.append(ConfirmOutcome.IGNORED)
        elif session.state == SessionState.QUEUED or (
            session.state == SessionState.IN_TRANSIT and (session.route_epoch or 0) < epoch
        ):
            outcomes.append(ConfirmOutcome.EARLY)
        elif session.state != SessionState.IN_TRANSIT or session.route_epoch != epoch:
            outcomes.append(ConfirmOutcome.IGNORED)
        elif icm_ids.get(session.agent_id) != agent_icm_id:
            outcomes.append(ConfirmOutcome.IGNORED)
        else:
            check_transition(session, SessionState.ACTIVE)
            session.state = SessionState.ACTIVE
            session.activated_at = now
            if session.phone_leg == PhoneLeg.NONE:
                session.phone_leg = PhoneLeg.CONNECTED
            # This MB set the phone leg up: only it can report the hang-up (phone_tracking).
            session.phone_peer_id, session.phone_epoch = peer_id, epoch
            activated.append(session)
            outcomes.append(ConfirmOutcome.ACTIVATED)
    if activated:
        changed = CollaborationSession.objects.filter(pk__in=[session.pk for session in activated])
        changed.update(state=SessionState.ACTIVE, activated_at=now)
        for peer_id, epoch in {(s.phone_peer_id, s.phone_epoch) for s in activated}:
            changed.filter(pk__in=[s.pk for s in activated if s.phone_peer_id == peer_id]).update(
                phone_peer_id=peer_id, phone_epoch=epoch
            )
        changed.filter(phone_leg=PhoneLeg.NONE).update(phone_leg=PhoneLeg.CONNECTED)
        audit_record_many(
            audit_entry(
                actor=MEDIA_BLENDER,
                action=AuditAction.SESSION_ACTIVATED,
                target=session,
                before={"state": SessionState.IN_TRANSIT},
                after={"state": SessionState.ACTIVE, "agent": session.agent_id, "route_epoch": session.route_epoch},
            )
            for session in activated
        )
        for session in activated:
            publish_session(session)
    return outcomes


@transaction.atomic
def session_phone_hung_up(*, session_id: object, peer_id: int, agent_icm_id: str | None = None) -> bool:
    """The MB pushed ``phone_hung_up``: the caller's phone leg ended; the web session does
    NOT end (docs/product.md, 'Caller hung up': the agent ends it, or the grace policy does).

    Accepted from either Media Blender of the session's server: after a manual switchover
    the old MB still bridges the calls of the sessions it routed (docs/product.md,
    'Media Blender failover'). When
    the event names an agent it must be the session's, so a stale route of another
    attempt cannot mark the session. Applies to a session in transit or active whose phone
    leg is not already hung up (a repeat is a no-op, ``False``). On change: ``phone_leg``
    ``hung_up``, ``phone_hung_up_at``, an audit entry, a live update to administrators and
    the agent.
    """
    pk = as_session_id(session_id)
    server_id = Peer.objects.filter(pk=peer_id, kind=PeerKind.MEDIA_BLENDER).values_list("server_id", flat=True).first()
    if pk is None or server_id is None:
        return False
    session = _lock_session(pk, server_id=server_id)
    if session is None or session.state not in ROUTED_STATES or session.phone_leg == PhoneLeg.HUNG_UP:
        return False
    if agent_icm_id is not None and _icm_id_of(session.agent_id) != agent_icm_id:
        return False
    before = {"phone_leg": session.phone_leg}
    session.phone_leg = PhoneLeg.HUNG_UP
    session.phone_hung_up_at = timezone.now()
    session.save(update_fields=["phone_leg", "phone_hung_up_at"])
    audit_record(
        actor=MEDIA_BLENDER,
        action=AuditAction.SESSION_PHONE_HUNG_UP,
        target=session,
        before=before,
        after={"phone_leg": PhoneLeg.HUNG_UP, "state": session.state},
    )
    publish_session(session)
    return True


@transaction.atomic
def session_requeue(
    *, session_id: object, actor: Actor, reason: str, routed_before: datetime | None = None
) -> CollaborationSession | None:
    """Put an in-transit session back in the queue: its route was not confirmed in time.

    Compare-and-set: only a session still in transit (and, with ``routed_before``, routed
    before then, so a route renewed meanwhile is left alone); otherwise ``None``. The
    agent, route and phone leg of the abandoned attempt are cleared; ``queued_at`` is kept,
    so the session is back at the head of the queue (docs/product.md, 'Media Blender failover'). Writes a
    ``session.requeued`` audit entry, publishes to administrators and to the agent that
    lost it, and on commit releases the route at the MB, re-syncs that agent's capacity and
    drains the queue.
    """
    session = CollaborationSession.objects.select_for_update().filter(pk=session_id).first()
    if session is None or session.state != SessionState.IN_TRANSIT:
        return None
    if routed_before is not None and (session.routed_at is None or session.routed_at >= routed_before):
        return None
    check_transition(session, SessionState.QUEUED)
    before = {"state": session.state, "agent": session.agent_id, "route_epoch": session.route_epoch}
    previous_agent_id = session.agent_id
    session.state = SessionState.QUEUED
    session.agent = None
    session.routed_at = None
    session.route_epoch = None
    session.phone_leg = PhoneLeg.NONE
    session.phone_hung_up_at = None
    session.transit_timeouts += 1
    session.save(
        update_fields=[
            "state",
            "agent",
            "routed_at",
            "route_epoch",
            "phone_leg",
            "phone_hung_up_at",
            "transit_timeouts",
        ]
    )
    audit_record(
        actor=actor,
        action=AuditAction.SESSION_REQUEUED,
        target=session,
        reason=reason,
        before=before,
        after={"state": SessionState.QUEUED},
    )
    publish_session_change(session, previous_agent_id=previous_agent_id)
    followups.after_session_requeued(session, previous_agent_id=previous_agent_id)
    return session


@transaction.atomic
def session_fail_transit(
    *, session_id: object, actor: Actor, routed_before: datetime, note: str
) -> CollaborationSession | None:
    """End an in-transit session whose route was not confirmed in time once too often
    (``Policy.max_transit_attempts``): reason ``transit_failed``, through ``session_end``
    (audit entry, live update, route released and queue drained on commit).

    Compare-and-set like :func:`session_requeue`: only a session still in transit and
    routed before ``routed_before`` (one confirmed or routed again meanwhile is left
    alone); otherwise ``None``.
    """
    session = CollaborationSession.objects.select_for_update().filter(pk=session_id).first()
    if session is None or session.state != SessionState.IN_TRANSIT:
        return None
    if session.routed_at is None or session.routed_at >= routed_before:
        return None
    return session_end(session_id=session.pk, actor=actor, reason=EndReason.TRANSIT_FAILED, note=note)
