"""The routing flow against a real Media Blender process: queued, in transit, active, ended.

No monitor runs here, so the MB's events are not delivered: the tests hand the
confirmation to the service the monitor would call, with the peer it came from.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from failover.choices import AuditAction, PeerKind
from failover.models import AuditEntry, Peer
from sessions.choices import EndReason, PhoneLeg, SessionState
from sessions.media_blender_client import MediaBlenderClient, connected_media_blender
from sessions.models import CollaborationSession
from sessions.services.drain import queue_drain, route_queued_sessions
from sessions.services.lifecycle import IllegalTransition, agent_set_ready, session_end
from sessions.services.media_blender import agent_sync
from sessions.services.requests import session_request
from sessions.services.routes import ConfirmOutcome, RouteOutcome, session_confirm_route, session_route
from sessions.tasks import drain_all
from tests.factories import SessionFactory, peer_mark_connected
from tests.sessions.conftest import mb_agents, mb_call, mb_routes

pytestmark = pytest.mark.django_db


def request(skill_group: str | None = "Sales", **kwargs) -> CollaborationSession:
    return session_request(caller_name="Caller", skill_group_name=skill_group, actor="caller", **kwargs)


def registered(*agents) -> None:
    for agent in agents:
        assert agent_sync(agent_id=agent.pk)


def actions_of(session: CollaborationSession) -> list[str]:
    entries = AuditEntry.objects.filter(object_id=str(session.pk)).order_by("pk")
    return list(entries.values_list("action", flat=True))


def test_a_requested_session_is_routed_confirmed_and_ended_by_its_agent(
    media_blender, make_agent, django_capture_on_commit_callbacks
):
    process, peer = media_blender
    ann = make_agent("ann", "Sales")
    registered(ann)
    session = request()
    assert session.state == SessionState.QUEUED

    assert queue_drain(server_id=session.server_id) == 1

    session.refresh_from_db()
    assert (session.state, session.agent, session.route_epoch) == (SessionState.IN_TRANSIT, ann, 1)
    assert session.routed_at is not None
    assert [(r["session_id"], r["agent_id"]) for r in mb_routes(process)] == [(str(session.pk), "ann")]

    outcome = session_confirm_route(session_id=str(session.pk), agent_icm_id="ann", peer_id=peer.pk)

    session.refresh_from_db()
    assert outcome == ConfirmOutcome.ACTIVATED
    assert (session.state, session.phone_leg) == (SessionState.ACTIVE, PhoneLeg.CONNECTED)
    assert session.activated_at is not None

    with django_capture_on_commit_callbacks(execute=True):
        session_end(session_id=session.pk, actor=ann.user, reason=EndReason.AGENT_ENDED)

    session.refresh_from_db()
    assert (session.state, session.end_reason, session.ended_by) == (SessionState.ENDED, "agent_ended", ann.user)
    assert mb_routes(process) == []  # the follow-up released the route at the MB
    assert mb_agents(process)["ann"]["sessions"] == []
    assert actions_of(session) == [
        AuditAction.SESSION_REQUESTED,
        AuditAction.SESSION_ROUTED,
        AuditAction.SESSION_ACTIVATED,
        AuditAction.SESSION_ENDED,
    ]


def test_the_queue_drains_oldest_first(media_blender, make_agent, server):
    registered(make_agent("ann", max_sessions=2))
    now = timezone.now()
    newest = SessionFactory(server=server, queued_at=now)
    oldest = SessionFactory(server=server, queued_at=now - timedelta(minutes=2))
    middle = SessionFactory(server=server, queued_at=now - timedelta(minutes=1))

    assert queue_drain(server_id=server.pk) == 2

    states = {s.pk: s.state for s in CollaborationSession.objects.all()}
    assert states == {
        oldest.pk: SessionState.IN_TRANSIT,
        middle.pk: SessionState.IN_TRANSIT,
        newest.pk: SessionState.QUEUED,
    }


def test_a_session_goes_only_to_an_agent_of_its_skill_group(media_blender, make_agent):
    sales, support = make_agent("ann", "Sales"), make_agent("bob", "Support")
    registered(sales, support)
    session = request("Support")

    queue_drain(server_id=session.server_id)

    session.refresh_from_db()
    assert session.agent == support


def test_without_an_available_agent_a_session_stays_queued_and_other_groups_still_route(media_blender, make_agent):
    support = make_agent("bob", "Support", ready=False)
    registered(make_agent("ann", "Sales"), support)
    support_first = request("Support")
    support_second = request("Support")
    sales = request("Sales")

    assert queue_drain(server_id=sales.server_id) == 1

    states = [s.state for s in CollaborationSession.objects.order_by("queued_at")]
    assert states == [SessionState.QUEUED, SessionState.QUEUED, SessionState.IN_TRANSIT]
    assert support_first.pk != support_second.pk
    # Readiness is told to the MB, and the queue moves once the agent is ready.
    agent_set_ready(agent_id=support.pk, ready=True, actor=support.user)
    registered(support)
    assert queue_drain(server_id=sales.server_id) == 1
    support_first.refresh_from_db()
    assert support_first.agent == support


def test_a_session_without_skill_group_goes_to_any_ready_agent(media_blender, make_agent):
    registered(make_agent("ann", "Billing"))
    session = request(None)

    queue_drain(server_id=session.server_id)

    session.refresh_from_db()
    assert session.agent.icm_id == "ann"


def test_draining_twice_routes_each_session_once(media_blender, make_agent):
    process, _ = media_blender
    registered(make_agent("ann", "Sales", max_sessions=3))
    sessions = [request() for _ in range(2)]

    assert queue_drain(server_id=sessions[0].server_id) == 2
    assert queue_drain(server_id=sessions[0].server_id) == 0

    assert sorted(r["session_id"] for r in mb_routes(process)) == sorted(str(s.pk) for s in sessions)
    assert AuditEntry.objects.filter(action=AuditAction.SESSION_ROUTED).count() == 2


def test_ending_an_ended_session_is_refused(server):
    session = SessionFactory(server=server)
    session_end(session_id=session.pk, actor="caller", reason=EndReason.CALLER_LEFT)

    with pytest.raises(IllegalTransition):
        session_end(session_id=session.pk, actor="caller", reason=EndReason.CALLER_LEFT)


def test_a_queued_session_cannot_be_confirmed(media_blender, make_agent):
    _, peer = media_blender
    make_agent("ann", "Sales")
    session = request()

    outcome = session_confirm_route(session_id=str(session.pk), agent_icm_id="ann", peer_id=peer.pk)

    session.refresh_from_db()
    assert outcome != ConfirmOutcome.ACTIVATED
    assert session.state == SessionState.QUEUED
    assert not AuditEntry.objects.filter(action=AuditAction.SESSION_ACTIVATED).exists()


def test_a_confirmation_from_the_standby_or_for_another_agent_is_ignored(media_blender, make_agent):
    _, peer = media_blender
    ann = make_agent("ann", "Sales")
    registered(ann, make_agent("bob", "Sales"))
    session = request()
    queue_drain(server_id=session.server_id)
    session.refresh_from_db()
    standby = Peer.objects.exclude(pk=peer.pk).get(kind=PeerKind.MEDIA_BLENDER)
    chosen = session.agent.icm_id
    other = "bob" if chosen == "ann" else "ann"

    from_standby = session_confirm_route(session_id=str(session.pk), agent_icm_id=chosen, peer_id=standby.pk)
    wrong_agent = session_confirm_route(session_id=str(session.pk), agent_icm_id=other, peer_id=peer.pk)
    not_a_session = session_confirm_route(session_id="s-1", agent_icm_id="ann", peer_id=peer.pk)

    assert (from_standby, wrong_agent, not_a_session) == (ConfirmOutcome.IGNORED,) * 3
    session.refresh_from_db()
    assert session.state == SessionState.IN_TRANSIT


def test_a_route_answered_before_a_switchover_is_fenced_off(media_blender, make_agent):
    process, peer = media_blender
    registered(make_agent("ann", "Sales"))
    session = request()
    answer = mb_call(process, "route", session_id=str(session.pk), skill_group="SG-sales")
    # The link switches (to the other peer, epoch 2) while the answer is on its way.
    peer_mark_connected(Peer.objects.exclude(pk=peer.pk).get(kind=PeerKind.MEDIA_BLENDER), epoch=2)

    outcome = session_route(session_id=session.pk, agent_icm_id=answer["agent_id"], epoch=1)

    assert outcome == RouteOutcome.STALE_EPOCH
    session.refresh_from_db()
    assert (session.state, session.agent) == (SessionState.QUEUED, None)


def test_the_drain_releases_a_route_fenced_off_by_a_switchover(media_blender, make_agent, server):
    process, peer = media_blender
    registered(make_agent("ann", "Sales"))
    session = request()
    asked_under_epoch_1 = connected_media_blender(server.pk)
    peer_mark_connected(peer, epoch=2)  # reconnected meanwhile: epoch 1 is stale

    with MediaBlenderClient(asked_under_epoch_1) as mb:
        (outcome,) = route_queued_sessions(
            mb, asked_under_epoch_1, server_id=server.pk, requests=[(session.pk, "SG-sales")]
        )

    assert outcome == RouteOutcome.STALE_EPOCH
    assert mb_routes(process) == []
    session.refresh_from_db()
    assert session.state == SessionState.QUEUED


def test_the_database_refuses_an_agent_the_media_blender_wrongly_thinks_free(media_blender, make_agent, server):
    process, _ = media_blender
    ann = make_agent("ann", "Sales")
    # Free in the database but of another group: the drain has someone who could take work.
    bob = make_agent("bob", "Support")
    registered(ann, bob)
    busy = SessionFactory(server=server, state=SessionState.ACTIVE, agent=ann, route_epoch=0)
    # The MB was told of two slots (a stale registration), though ann holds one session of one.
    mb_call(process, "register_agent", agent_id="ann", skill_groups=["SG-sales"], max_sessions=2, state="ready")
    session = request()

    assert queue_drain(server_id=server.pk) == 0

    session.refresh_from_db()
    assert session.state == SessionState.QUEUED
    assert mb_routes(process) == []
    # The MB's view of ann was corrected: no slot left for sessions it routes.
    assert mb_agents(process)["ann"]["state"] == "not_ready"
    assert busy.agent == ann


def test_with_no_agent_free_in_the_database_the_drain_leaves_the_media_blender_alone(media_blender, make_agent, server):
    """The same stale registration, but nobody could take a session: nothing is asked (the
    periodic reconcile corrects the MB; the next drain that asks would correct it too)."""
    process, _ = media_blender
    ann = make_agent("ann", "Sales")
    registered(ann)
    SessionFactory(server=server, state=SessionState.ACTIVE, agent=ann, route_epoch=0)
    mb_call(process, "register_agent", agent_id="ann", skill_groups=["SG-sales"], max_sessions=2, state="ready")
    session = request()

    assert queue_drain(server_id=server.pk) == 0

    session.refresh_from_db()
    assert (session.state, mb_routes(process)) == (SessionState.QUEUED, [])
    assert mb_agents(process)["ann"]["state"] == "ready", "not asked, so not corrected yet"
    drain_all.apply()
    assert mb_agents(process)["ann"]["state"] == "not_ready", "the periodic reconcile corrects it"


def test_the_media_blender_learns_each_agents_slots_skill_groups_and_readiness(media_blender, make_agent, server):
    process, _ = media_blender
    ann = make_agent("ann", "Sales", "Support", max_sessions=3)
    bob = make_agent("bob", "Support", ready=False)
    SessionFactory(server=server, state=SessionState.ACTIVE, agent=ann, route_epoch=0)  # routed by an older MB

    registered(ann, bob)

    agents = mb_agents(process)
    assert agents["ann"]["skill_groups"] == ["SG-sales", "SG-support", "collab.any"]
    assert (agents["ann"]["state"], agents["ann"]["max_sessions"]) == ("ready", 2)
    assert (agents["bob"]["state"], agents["bob"]["max_sessions"]) == ("not_ready", 1)


def test_the_periodic_safety_net_drains_a_queue_whose_drain_message_was_lost(media_blender, make_agent):
    from sessions.tasks import drain_all

    process, _ = media_blender
    ann = make_agent("ann", "Sales")
    registered(ann)
    # Made directly, as if the request's drain message had been lost on the way.
    session = SessionFactory(server=ann.server, skill_group=ann.skill_groups.get(name="Sales"))

    assert drain_all.apply().get() == 1

    session.refresh_from_db()
    assert (session.state, session.agent) == (SessionState.IN_TRANSIT, ann)
    assert drain_all.apply().get() == 0


def test_the_safety_net_frees_a_slot_whose_release_was_lost(media_blender, make_agent):
    """A worker killed (or Redis restarted) between a session's end and the release of its
    route leaves the Media Blender believing the agent is busy; the periodic drain reconciles
    the agents with it first, so the next caller is routed."""
    process, peer = media_blender
    ann = make_agent("ann", "Sales")
    registered(ann)
    first = request()
    assert queue_drain(server_id=first.server_id) == 1
    session_confirm_route(session_id=str(first.pk), agent_icm_id="ann", peer_id=peer.pk)
    # Ended with its follow-up lost: nothing committed runs it (not a transactional test).
    session_end(session_id=first.pk, actor=ann.user, reason=EndReason.AGENT_ENDED)
    assert [r["session_id"] for r in mb_routes(process)] == [str(first.pk)]
    waiting = request()
    assert queue_drain(server_id=waiting.server_id) == 0, "the MB still thinks ann is busy"

    assert drain_all.apply().get() == 1

    waiting.refresh_from_db()
    assert (waiting.state, waiting.agent) == (SessionState.IN_TRANSIT, ann)
    assert [r["session_id"] for r in mb_routes(process)] == [str(waiting.pk)]
