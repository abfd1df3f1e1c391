"""Batches of routes and confirmations: one transaction for many answers of the Media
Blender must decide exactly what the same answers decided one by one (capacity, skill
groups, fencing, duplicates), and a queue longer than a batch drains oldest first.

The equivalence tests run each drawn batch twice on the same rows, inside savepoints
rolled back after each run: once through the batch service, once answer by answer.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failover.choices import AuditAction, PeerKind, PeerPriority
from failover.models import AuditEntry
from sessions.choices import ROUTED_STATES, AgentState, EndReason, SessionState
from sessions.models import Agent, CollaborationSession
from sessions.services.drain import BATCH_SIZE, queue_drain
from sessions.services.media_blender import agents_reconcile
from sessions.services.requests import session_request
from sessions.services.routes import (
    ConfirmOutcome,
    RouteOutcome,
    session_confirm_route,
    session_confirm_routes,
    session_route,
    session_route_many,
)
from tests.factories import AgentFactory, PeerFactory, SessionFactory, SkillGroupFactory, peer_mark_connected
from tests.sessions.conftest import mb_routes

pytestmark = pytest.mark.django_db

EPOCH = 2
AGENTS = ["a1", "a2", "a3", "a4", "ghost"]  # ghost: an id the database does not know


class _Rollback(Exception):
    pass


@pytest.fixture
def rows(server) -> dict[str, Any]:
    """Agents of every kind (free, two slots, not ready, full) and sessions of every state."""
    connected = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.PRIMARY, name="mb-1")
    standby = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.SECONDARY, name="mb-2")
    peer_mark_connected(connected, epoch=EPOCH)
    sales = SkillGroupFactory(server=server, name="Sales", icm_id="SG-sales")
    support = SkillGroupFactory(server=server, name="Support", icm_id="SG-support")
    specs = [("a1", [sales], 1, AgentState.READY), ("a2", [sales, support], 2, AgentState.READY)]
    specs += [("a3", [support], 1, AgentState.NOT_READY), ("a4", [], 1, AgentState.READY)]
    agents = {}
    for icm_id, skill_groups, slots, state in specs:
        agent = AgentFactory(server=server, icm_id=icm_id, user__username=icm_id, max_sessions=slots, state=state)
        agent.skill_groups.set(skill_groups)
        agents[icm_id] = agent
    queued = [SessionFactory(server=server, skill_group=group) for group in (sales, support, None, sales)]
    rerouting = SessionFactory(
        server=server, skill_group=sales, state=SessionState.IN_TRANSIT, agent=agents["a1"], route_epoch=EPOCH - 1
    )
    in_transit = SessionFactory(
        server=server, skill_group=None, state=SessionState.IN_TRANSIT, agent=agents["a2"], route_epoch=EPOCH
    )
    active = SessionFactory(server=server, state=SessionState.ACTIVE, agent=agents["a4"], route_epoch=EPOCH)
    ended = SessionFactory(
        server=server, state=SessionState.ENDED, end_reason=EndReason.CALLER_LEFT, ended_at=timezone.now()
    )
    sessions = [*queued, rerouting, in_transit, active, ended]
    return {"server": server, "sessions": [str(s.pk) for s in sessions], "peers": [connected.pk, standby.pk]}


def _state(server_id: int) -> tuple[list[tuple], dict[str, int]]:
    sessions = CollaborationSession.objects.filter(server_id=server_id).order_by("pk")
    rows = list(sessions.values_list("pk", "state", "agent_id", "route_epoch", "phone_leg"))
    audited = dict.fromkeys((AuditAction.SESSION_ROUTED, AuditAction.SESSION_ACTIVATED), 0)
    for action in AuditEntry.objects.filter(action__in=list(audited)).values_list("action", flat=True):
        audited[action] += 1
    return rows, audited


def _run(work, server_id: int) -> tuple[Any, tuple]:
    """Run ``work``, read the rows it left, and roll it all back."""
    seen: dict[str, Any] = {}
    try:
        with transaction.atomic():
            seen["value"] = work()
            seen["state"] = _state(server_id)
            seen["overloaded"] = _overloaded(server_id)
            raise _Rollback
    except _Rollback:
        pass
    assert seen["overloaded"] == [], "an agent holds more sessions than its slots"
    return seen["value"], seen["state"]


def _overloaded(server_id: int) -> list[str]:
    return [
        agent.icm_id
        for agent in Agent.objects.filter(server_id=server_id)
        if CollaborationSession.objects.filter(agent=agent, state__in=ROUTED_STATES).count() > agent.max_sessions
    ]


routes = st.lists(st.tuples(st.integers(0, 7), st.sampled_from(AGENTS)), max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=routes)
def test_a_batch_of_routes_decides_what_the_same_routes_decide_one_by_one(rows, drawn):
    server_id, ids = rows["server"].pk, rows["sessions"]
    answers = [(ids[n], agent) for n, agent in drawn]

    batch, after_batch = _run(lambda: session_route_many(server_id=server_id, routes=answers, epoch=EPOCH), server_id)
    one_by_one, after_each = _run(
        lambda: [session_route(session_id=sid, agent_icm_id=agent, epoch=EPOCH) for sid, agent in answers], server_id
    )

    assert batch == one_by_one
    assert after_batch == after_each


def test_a_batch_never_gives_an_agent_more_sessions_than_its_slots(rows):
    server_id, ids = rows["server"].pk, rows["sessions"]
    # a2 has two slots and holds one session; the MB (wrongly) names it for two more.
    outcomes = session_route_many(server_id=server_id, routes=[(ids[0], "a2"), (ids[3], "a2")], epoch=EPOCH)

    assert outcomes == [RouteOutcome.ROUTED, RouteOutcome.AGENT_UNAVAILABLE]
    assert _overloaded(server_id) == []
    assert CollaborationSession.objects.get(pk=ids[3]).state == SessionState.QUEUED


def test_a_batch_asked_under_a_stale_epoch_changes_nothing(rows):
    server_id, ids = rows["server"].pk, rows["sessions"]
    before = _state(server_id)

    outcomes = session_route_many(server_id=server_id, routes=[(ids[0], "a1"), (ids[1], "a2")], epoch=EPOCH - 1)

    assert outcomes == [RouteOutcome.STALE_EPOCH] * 2
    assert _state(server_id) == before


confirmations = st.lists(
    st.tuples(st.integers(0, 7), st.sampled_from(AGENTS), st.sampled_from([0, 1])),  # peer 0 is the connected one
    max_size=10,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=confirmations)
def test_a_batch_of_confirmations_decides_what_they_decide_one_by_one(rows, drawn):
    server_id, ids, peers = rows["server"].pk, rows["sessions"], rows["peers"]
    events = [(ids[n], agent, peers[peer]) for n, agent, peer in drawn]

    batch, after_batch = _run(lambda: session_confirm_routes(events), server_id)
    one_by_one, after_each = _run(
        lambda: [session_confirm_route(session_id=s, agent_icm_id=a, peer_id=p) for s, a, p in events], server_id
    )

    assert batch == one_by_one
    assert after_batch == after_each


def test_a_confirmation_of_the_current_route_activates_once_in_a_batch(rows):
    ids, connected = rows["sessions"], rows["peers"][0]
    in_transit = ids[5]

    outcomes = session_confirm_routes([(in_transit, "a2", connected), (in_transit, "a2", connected)])

    assert outcomes == [ConfirmOutcome.ACTIVATED, ConfirmOutcome.IGNORED]
    assert CollaborationSession.objects.get(pk=in_transit).state == SessionState.ACTIVE
    assert AuditEntry.objects.filter(object_id=in_transit, action=AuditAction.SESSION_ACTIVATED).count() == 1


def test_a_queue_longer_than_a_batch_drains_oldest_first_in_each_group(media_blender, make_agent, server):
    process, _ = media_blender
    sales = [make_agent(f"s{n:03d}", "Sales") for n in range(BATCH_SIZE + 20)]
    support = [make_agent(f"u{n:03d}", "Support") for n in range(30)]
    assert agents_reconcile(server_id=server.pk)
    requests = [
        session_request(caller_name=f"caller {n}", skill_group_name=("Sales", "Support")[n % 2], actor="caller")
        for n in range(2 * BATCH_SIZE + 50)
    ]

    routed = queue_drain(server_id=server.pk)

    assert routed == len(sales) + len(support)
    for group, agents in (("Sales", sales), ("Support", support)):
        asked = [s for s in requests if s.skill_group.name == group]
        states = dict(CollaborationSession.objects.filter(pk__in=[s.pk for s in asked]).values_list("pk", "state"))
        expected = [SessionState.IN_TRANSIT] * len(agents) + [SessionState.QUEUED] * (len(asked) - len(agents))
        assert [states[s.pk] for s in asked] == expected, f"{group}: the oldest are routed, the rest wait in order"
    holders = CollaborationSession.objects.filter(state=SessionState.IN_TRANSIT).values_list("agent_id", flat=True)
    assert len(set(holders)) == len(holders), "one session per agent of one slot"
    in_db = set(CollaborationSession.objects.filter(state=SessionState.IN_TRANSIT).values_list("pk", flat=True))
    assert {r["session_id"] for r in mb_routes(process)} == {str(pk) for pk in in_db}


def test_the_agent_that_loses_a_rerouted_session_hears_only_that_it_is_gone(
    rows, monkeypatch, django_capture_on_commit_callbacks
):
    from common import live

    sent: list[tuple[str, dict, tuple]] = []
    monkeypatch.setattr(live, "send_now", lambda kind, data, groups: sent.append((kind, data, tuple(groups))))
    server_id, rerouting = rows["server"].pk, rows["sessions"][4]  # in transit with a1 under the old epoch
    a1, a2 = (Agent.objects.get(icm_id=icm_id) for icm_id in ("a1", "a2"))

    with django_capture_on_commit_callbacks(execute=True):
        assert session_route_many(server_id=server_id, routes=[(rerouting, "a2")], epoch=EPOCH) == [RouteOutcome.ROUTED]

    to_a1 = [data for kind, data, groups in sent if groups == (live.agent_group(a1.pk),)]
    assert to_a1 == [{"id": rerouting, "state": SessionState.IN_TRANSIT}], "no caller details, not who has it now"
    to_a2 = [data for kind, data, groups in sent if live.agent_group(a2.pk) in groups]
    assert to_a2[0]["caller_name"], "the new agent gets the whole session"
