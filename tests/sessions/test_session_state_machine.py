"""A Hypothesis state machine drives sessions through any sequence of requests, routes
(the MB's decision simulated by naming an agent), confirmations, switchovers, requeues,
hang-ups and ends, through the services only, and checks the session rules after every step.

A small model predicts each service's outcome; the database must agree with it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from failover.choices import AuditAction, Health, PeerKind, PeerPriority, ServerRole
from failover.models import AuditEntry, Link, Peer, Server
from failover.services.switchover import link_switchover
from sessions.choices import ROUTED_STATES, EndReason, PhoneLeg, SessionState
from sessions.models import Agent, CollaborationSession
from sessions.services.lifecycle import IllegalTransition, agent_login, agent_set_ready, session_end
from sessions.services.requests import session_request
from sessions.services.routes import (
    ConfirmOutcome,
    RouteOutcome,
    session_confirm_route,
    session_phone_hung_up,
    session_requeue,
    session_route,
)
from tests.factories import AgentFactory, PeerFactory, ServerFactory, SkillGroupFactory, peer_mark_connected

GROUPS = (None, "Sales", "Support")
INDEX = st.integers(min_value=0, max_value=50)


@dataclass
class ModelSession:
    pk: object
    group: str | None
    state: str = SessionState.QUEUED
    agent: int | None = None
    epoch: int | None = None
    phone: str = PhoneLeg.NONE
    actions: Counter = field(default_factory=lambda: Counter({AuditAction.SESSION_REQUESTED: 1}))


@dataclass
class ModelAgent:
    pk: int
    icm_id: str
    groups: set[str]
    max_sessions: int
    ready: bool = False


class SessionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # Each example gets its own routing server; earlier ones stop taking requests.
        Server.objects.filter(role=ServerRole.ROUTING).update(role=ServerRole.AGENT)
        self.server = ServerFactory()
        groups = {name: SkillGroupFactory(server=self.server, name=name) for name in ("Sales", "Support")}
        self.peers = [
            PeerFactory(server=self.server, kind=PeerKind.MEDIA_BLENDER, priority=priority)
            for priority in (PeerPriority.PRIMARY, PeerPriority.SECONDARY)
        ]
        Peer.objects.filter(pk__in=[p.pk for p in self.peers]).update(health=Health.UP)
        peer_mark_connected(self.peers[0], epoch=1)
        self.link = Link.objects.get(server=self.server, kind=PeerKind.MEDIA_BLENDER)
        self.epoch = 1
        self.agents: list[ModelAgent] = []
        for icm_id, names, max_sessions in (("a1", ["Sales"], 1), ("a2", ["Sales", "Support"], 2), ("a3", [], 1)):
            agent = AgentFactory(server=self.server, icm_id=f"{self.server.pk}-{icm_id}", max_sessions=max_sessions)
            agent.skill_groups.set([groups[n] for n in names])
            agent_login(agent_id=agent.pk, actor="test")
            agent_set_ready(agent_id=agent.pk, ready=True, actor="test")
            self.agents.append(ModelAgent(agent.pk, agent.icm_id, set(names), max_sessions, ready=True))
        self.sessions: list[ModelSession] = []
        self.ended_at: dict[object, object] = {}

    # -- helpers --------------------------------------------------------------------------

    def _session(self, index: int, *, prefer: str | None = None) -> ModelSession:
        # Bias towards sessions in the state the rule is about, or most steps are no-ops.
        preferred = [s for s in self.sessions if s.state == prefer]
        pool = preferred or self.sessions
        return pool[index % len(pool)]

    def _load(self, agent: ModelAgent, besides: ModelSession) -> int:
        return sum(1 for s in self.sessions if s.agent == agent.pk and s.state in ROUTED_STATES and s is not besides)

    def _can_take(self, agent: ModelAgent, session: ModelSession) -> bool:
        skilled = session.group is None or session.group in agent.groups
        return agent.ready and skilled and self._load(agent, session) < agent.max_sessions

    def _connected_peer(self) -> Peer:
        return Peer.objects.get(server=self.server, kind=PeerKind.MEDIA_BLENDER, connection="connected")

    # -- rules ----------------------------------------------------------------------------

    @rule(group=st.sampled_from(GROUPS))
    def caller_requests(self, group: str | None) -> None:
        session = session_request(caller_name="Caller", skill_group_name=group, actor="caller")
        assert session.server_id == self.server.pk
        self.sessions.append(ModelSession(session.pk, group))

    @rule(index=INDEX, ready=st.booleans())
    def agent_readiness(self, index: int, ready: bool) -> None:
        agent = self.agents[index % len(self.agents)]
        agent_set_ready(agent_id=agent.pk, ready=ready, actor="test")
        agent.ready = ready

    @precondition(lambda self: self.sessions)
    @rule(index=INDEX, agent_index=INDEX, stale=st.sampled_from([False, False, False, True]))
    def media_blender_routes(self, index: int, agent_index: int, stale: bool) -> None:
        session = self._session(index, prefer=SessionState.QUEUED)
        agent = self.agents[agent_index % len(self.agents)]
        epoch = self.epoch - 1 if stale else self.epoch
        if stale:
            expected = RouteOutcome.STALE_EPOCH
        elif session.state in ROUTED_STATES and (session.agent, session.epoch) == (agent.pk, epoch):
            expected = RouteOutcome.ALREADY_ROUTED
        elif not (
            session.state == SessionState.QUEUED
            or (session.state == SessionState.IN_TRANSIT and session.epoch != epoch)
        ):
            expected = RouteOutcome.NOT_ROUTABLE
        elif not self._can_take(agent, session):
            expected = RouteOutcome.AGENT_UNAVAILABLE
        else:
            expected = RouteOutcome.ROUTED

        outcome = session_route(session_id=session.pk, agent_icm_id=agent.icm_id, epoch=epoch)

        event(f"route {outcome}")
        assert outcome == expected
        if outcome == RouteOutcome.ROUTED:
            session.state, session.agent, session.epoch = SessionState.IN_TRANSIT, agent.pk, epoch
            session.actions[AuditAction.SESSION_ROUTED] += 1

    @precondition(lambda self: self.epoch < 3)
    @rule()
    def media_blender_switches_over(self) -> None:
        result = link_switchover(link_id=self.link.pk, actor="test", reason="machine")
        assert result.changed
        self.epoch = result.link.epoch

    @precondition(lambda self: self.sessions)
    @rule(
        index=INDEX,
        from_standby=st.sampled_from([False, False, True]),
        right_agent=st.sampled_from([True, True, False]),
    )
    def media_blender_confirms(self, index: int, from_standby: bool, right_agent: bool) -> None:
        session = self._session(index, prefer=SessionState.IN_TRANSIT)
        connected = self._connected_peer()
        peer = next(p for p in self.peers if p.pk != connected.pk) if from_standby else connected
        holder = next((a for a in self.agents if a.pk == session.agent), None)
        icm_id = holder.icm_id if holder and right_agent else "nobody"
        if from_standby:
            expected = ConfirmOutcome.IGNORED
        elif session.state == SessionState.QUEUED or (
            session.state == SessionState.IN_TRANSIT and session.epoch < self.epoch
        ):
            expected = ConfirmOutcome.EARLY
        elif session.state == SessionState.IN_TRANSIT and icm_id != "nobody":
            expected = ConfirmOutcome.ACTIVATED
        else:
            expected = ConfirmOutcome.IGNORED

        outcome = session_confirm_route(session_id=str(session.pk), agent_icm_id=icm_id, peer_id=peer.pk)

        event(f"confirm {outcome}")
        assert outcome == expected
        if outcome == ConfirmOutcome.ACTIVATED:
            session.state = SessionState.ACTIVE
            session.phone = PhoneLeg.CONNECTED if session.phone == PhoneLeg.NONE else session.phone
            session.actions[AuditAction.SESSION_ACTIVATED] += 1

    @precondition(lambda self: self.sessions)
    @rule(index=INDEX)
    def transit_times_out(self, index: int) -> None:
        session = self._session(index, prefer=SessionState.IN_TRANSIT)
        requeued = session_requeue(session_id=session.pk, actor="test", reason="machine")
        assert (requeued is not None) == (session.state == SessionState.IN_TRANSIT)
        if requeued is not None:
            session.state, session.agent, session.epoch, session.phone = SessionState.QUEUED, None, None, PhoneLeg.NONE
            session.actions[AuditAction.SESSION_REQUEUED] += 1

    @precondition(lambda self: self.sessions)
    @rule(index=INDEX)
    def caller_hangs_up(self, index: int) -> None:
        session = self._session(index)
        changed = session_phone_hung_up(session_id=str(session.pk), peer_id=self._connected_peer().pk)
        assert changed == (session.state in ROUTED_STATES and session.phone != PhoneLeg.HUNG_UP)
        if changed:
            session.phone = PhoneLeg.HUNG_UP
            session.actions[AuditAction.SESSION_PHONE_HUNG_UP] += 1

    @precondition(lambda self: self.sessions)
    @rule(index=INDEX, reason=st.sampled_from([EndReason.AGENT_ENDED, EndReason.ADMIN_ENDED, EndReason.CALLER_LEFT]))
    def someone_ends_the_session(self, index: int, reason: EndReason) -> None:
        session = self._session(index)
        if session.state == SessionState.ENDED:
            with pytest.raises(IllegalTransition):
                session_end(session_id=session.pk, actor="test", reason=reason)
            return
        ended = session_end(session_id=session.pk, actor="test", reason=reason)
        session.state = SessionState.ENDED
        session.actions[AuditAction.SESSION_ENDED] += 1
        self.ended_at[session.pk] = ended.ended_at

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def every_session_is_where_the_model_says_and_keeps_the_database_rules(self) -> None:
        rows = {s.pk: s for s in CollaborationSession.objects.filter(server=self.server)}
        assert set(rows) == {s.pk for s in self.sessions}
        for model in self.sessions:
            row = rows[model.pk]
            assert (row.state, row.agent_id, row.phone_leg) == (model.state, model.agent, model.phone)
            if row.state in ROUTED_STATES:
                assert None not in (row.agent_id, row.routed_at, row.route_epoch)
            if row.state == SessionState.QUEUED:
                assert (row.agent_id, row.route_epoch) == (None, None)
            assert (row.state == SessionState.ENDED) == bool(row.end_reason) == (row.ended_at is not None)
            if row.state == SessionState.ACTIVE:
                assert row.activated_at is not None

    @invariant()
    def ended_is_final(self) -> None:
        rows = CollaborationSession.objects.filter(pk__in=list(self.ended_at)).values_list("pk", "state", "ended_at")
        assert {pk: (state, at) for pk, state, at in rows} == {
            pk: (SessionState.ENDED, at) for pk, at in self.ended_at.items()
        }

    @invariant()
    def no_agent_holds_more_than_its_max_sessions(self) -> None:
        routed = CollaborationSession.objects.filter(server=self.server, state__in=ROUTED_STATES)
        loads = Counter(routed.values_list("agent_id", flat=True))
        limits = dict(Agent.objects.filter(server=self.server).values_list("pk", "max_sessions"))
        assert all(load <= limits[agent_id] for agent_id, load in loads.items()), (loads, limits)

    @invariant()
    def the_audit_history_has_an_entry_per_transition(self) -> None:
        found: dict[str, Counter] = {str(s.pk): Counter() for s in self.sessions}
        entries = AuditEntry.objects.filter(object_id__in=list(found)).values_list("object_id", "action")
        for object_id, action in entries:
            found[object_id][action] += 1
        assert found == {str(s.pk): s.actions for s in self.sessions}


@pytest.mark.django_db
def test_sessions_keep_their_rules_under_any_sequence_of_routing_events_and_actions():
    SessionMachine.TestCase.settings = settings(
        max_examples=20,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    SessionMachine.TestCase().runTest()
