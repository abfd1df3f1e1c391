"""The Celery tasks of the sessions app: quiet when their row is gone, safe to run twice,
scheduled where they should be."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from celery.signals import task_prerun
from django.conf import settings
from django.utils import timezone

from failover.choices import AuditAction, PeerKind
from failover.models import AuditEntry, Link, Peer, Policy
from failover.services.switchover import link_switchover
from sessions.choices import EndReason, PhoneLeg, SessionState
from sessions.models import CollaborationSession
from sessions.tasks import (
    after_media_blender_switchover,
    drain_queue,
    end_hung_up_after_grace,
    release_route,
    requeue_expired_transits,
    sync_agent,
)
from tests.factories import PeerFactory, SessionFactory
from tests.sessions.conftest import mb_agents, mb_routes

pytestmark = pytest.mark.django_db


@pytest.fixture
def tasks_run() -> list[str]:
    """Names of the tasks that run (eagerly) during the test."""
    names: list[str] = []

    def record(sender=None, **kwargs) -> None:
        names.append(sender.name)

    task_prerun.connect(record, weak=False)
    yield names
    task_prerun.disconnect(record)


def test_every_task_returns_quietly_when_its_row_is_gone():
    assert drain_queue.apply(args=[987654]).get() == 0
    assert sync_agent.apply(args=[987654]).get() is False
    assert release_route.apply(args=[str(uuid.uuid4()), 987654]).get() == 0
    assert after_media_blender_switchover.apply(args=[987654, 1]).get() is False


def test_the_periodic_tasks_are_scheduled_to_expire_before_their_next_tick():
    schedule = {entry["task"]: entry for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    for name, every in (("sessions.requeue_expired_transits", 1.0), ("sessions.end_hung_up_after_grace", 5.0)):
        assert schedule[name]["schedule"] == every
        assert 0 < schedule[name]["options"]["expires"] < every


def test_transits_older_than_the_timeout_go_back_to_the_head_of_the_queue_once(server, agent):
    Policy.objects.filter(pk=1).update(transit_timeout_seconds=10)
    Policy.current()
    now = timezone.now()
    queued_at = now - timedelta(minutes=5)
    expired = SessionFactory(
        server=server,
        state=SessionState.IN_TRANSIT,
        agent=agent,
        queued_at=queued_at,
        routed_at=now - timedelta(seconds=11),
        route_epoch=1,
    )
    recent = SessionFactory(
        server=server, state=SessionState.IN_TRANSIT, agent=agent, routed_at=now - timedelta(seconds=5), route_epoch=1
    )

    assert requeue_expired_transits.apply().get() == 1
    assert requeue_expired_transits.apply().get() == 0

    expired.refresh_from_db()
    assert (expired.state, expired.agent, expired.route_epoch, expired.routed_at) == (
        SessionState.QUEUED,
        None,
        None,
        None,
    )
    assert expired.queued_at == queued_at
    assert CollaborationSession.objects.get(pk=recent.pk).state == SessionState.IN_TRANSIT
    entry = AuditEntry.objects.get(action=AuditAction.SESSION_REQUEUED)
    assert entry.object_id == str(expired.pk)
    assert entry.before["agent"] == agent.pk


def test_a_session_whose_routes_time_out_too_often_ends_as_transit_failed_when_the_policy_bounds_it(server, agent):
    Policy.objects.filter(pk=1).update(transit_timeout_seconds=10)
    Policy.current()

    def routed_long_ago(session: CollaborationSession) -> None:
        CollaborationSession.objects.filter(pk=session.pk).update(
            state=SessionState.IN_TRANSIT, agent=agent, routed_at=timezone.now() - timedelta(seconds=11), route_epoch=1
        )

    session = SessionFactory(server=server)
    for attempt in range(1, 4):  # no bound (the default): back to the queue every time
        routed_long_ago(session)
        assert requeue_expired_transits.apply().get() == 1
        session.refresh_from_db()
        assert (session.state, session.transit_timeouts) == (SessionState.QUEUED, attempt)

    Policy.objects.filter(pk=1).update(max_transit_attempts=5)
    routed_long_ago(session)
    assert requeue_expired_transits.apply().get() == 1
    session.refresh_from_db()
    assert (session.state, session.transit_timeouts) == (SessionState.QUEUED, 4)

    routed_long_ago(session)  # the fifth route not confirmed in time: the caller is told
    assert requeue_expired_transits.apply().get() == 1
    session.refresh_from_db()
    assert (session.state, session.end_reason) == (SessionState.ENDED, EndReason.TRANSIT_FAILED)
    entry = AuditEntry.objects.get(action=AuditAction.SESSION_ENDED, object_id=str(session.pk))
    assert (entry.actor_name, entry.after["end_reason"]) == ("system:policy", EndReason.TRANSIT_FAILED)
    assert "5 times" in entry.reason
    assert requeue_expired_transits.apply().get() == 0


def test_a_transit_confirmed_before_the_policy_gives_up_is_left_alone(server, agent):
    from sessions.services.routes import session_fail_transit

    session = SessionFactory(
        server=server, state=SessionState.ACTIVE, agent=agent, routed_at=timezone.now() - timedelta(minutes=1)
    )

    assert session_fail_transit(session_id=session.pk, actor="t", routed_before=timezone.now(), note="x") is None
    assert CollaborationSession.objects.get(pk=session.pk).state == SessionState.ACTIVE


def test_hung_up_sessions_end_after_the_grace_only_when_the_policy_sets_one(server, agent):
    hung_up = SessionFactory(
        server=server,
        state=SessionState.ACTIVE,
        agent=agent,
        phone_leg=PhoneLeg.HUNG_UP,
        phone_hung_up_at=timezone.now() - timedelta(minutes=10),
        route_epoch=1,
    )
    assert end_hung_up_after_grace.apply().get() == 0

    Policy.objects.filter(pk=1).update(hung_up_grace_seconds=60)

    assert end_hung_up_after_grace.apply().get() == 1
    assert end_hung_up_after_grace.apply().get() == 0
    hung_up.refresh_from_db()
    assert (hung_up.state, hung_up.end_reason) == (SessionState.ENDED, EndReason.HANGUP_TIMEOUT)


def test_reconnecting_a_media_blender_registers_the_agents_and_drains_the_queue_at_once(
    media_blender, make_agent, server, django_capture_on_commit_callbacks
):
    process, peer = media_blender
    make_agent("ann", "Sales")
    session = SessionFactory(server=server, skill_group=server.skill_groups.get(name="Sales"))
    Peer.objects.filter(server=server, kind=PeerKind.MEDIA_BLENDER).update(health="up")
    link = Link.objects.get(server=server, kind=PeerKind.MEDIA_BLENDER)
    link_switchover(link_id=link.pk, actor="test", reason="away")  # to mb-2, not running
    assert mb_agents(process) == {}

    with django_capture_on_commit_callbacks(execute=True):
        link_switchover(link_id=link.pk, actor="test", reason="back", to_peer_id=peer.pk)

    assert mb_agents(process)["ann"]["state"] == "ready"
    session.refresh_from_db()
    assert (session.state, session.route_epoch) == (SessionState.IN_TRANSIT, 3)
    assert [r["session_id"] for r in mb_routes(process)] == [str(session.pk)]


def test_an_admin_workstation_switchover_schedules_nothing_for_sessions(
    server, tasks_run, django_capture_on_commit_callbacks
):
    for priority in (1, 2):
        PeerFactory(server=server, kind=PeerKind.ADMIN_WORKSTATION, priority=priority)
    Peer.objects.filter(server=server).update(health="up")
    link = Link.objects.get(server=server, kind=PeerKind.ADMIN_WORKSTATION)

    with django_capture_on_commit_callbacks(execute=True):
        link_switchover(link_id=link.pk, actor="test", reason="manual")

    # Only the configuration check of issue 6 follows; the sessions are not the AW's business.
    assert tasks_run == ["failover.verify_config"]


def test_a_switchover_follow_up_for_an_epoch_that_has_passed_does_nothing(media_blender, make_agent, server):
    process, _ = media_blender
    make_agent("ann", "Sales")
    link = Link.objects.get(server=server, kind=PeerKind.MEDIA_BLENDER)

    assert after_media_blender_switchover.apply(args=[link.pk, link.epoch - 1]).get() is False
    assert mb_agents(process) == {}
    assert after_media_blender_switchover.apply(args=[link.pk, link.epoch]).get() is True
    assert after_media_blender_switchover.apply(args=[link.pk, link.epoch]).get() is True  # twice: same result
    assert list(mb_agents(process)) == ["ann"]


def test_a_drain_on_its_way_is_not_sent_again_until_it_starts(server, make_agent):
    from common.redis_client import shared_redis
    from sessions.services.drain_schedule import SCHEDULED_SECONDS, _scheduled_key, drain_schedule_wanted, drain_started

    make_agent("ann", "Sales")  # a free agent: a drain could route something
    drain_started(server.pk)
    assert drain_schedule_wanted(server.pk), "nothing on its way: send one"
    assert not drain_schedule_wanted(server.pk), "one is on its way: it will see this session too"
    assert 0 < shared_redis().ttl(_scheduled_key(server.pk)) <= SCHEDULED_SECONDS, "a lost task does not block for ever"

    drain_queue.apply(args=[server.pk])  # the task starting clears the mark

    assert drain_schedule_wanted(server.pk), "a change after the drain started needs a drain of its own"
    drain_started(server.pk)


def test_while_every_agent_is_busy_callers_send_no_drain_until_an_agent_is_free(server, make_agent):
    from sessions.services.drain import queue_drain
    from sessions.services.drain_schedule import drain_schedule_wanted, drain_started

    ann = make_agent("ann", "Sales", ready=False)
    drain_started(server.pk)
    assert drain_schedule_wanted(server.pk)

    drain_queue.apply(args=[server.pk])  # nobody could take a session: the mark stays

    assert not drain_schedule_wanted(server.pk), "callers queuing meanwhile send nothing"
    queue_drain(server_id=server.pk)  # what freeing an agent runs (sync_agent, release_route)
    assert drain_schedule_wanted(server.pk), "after that drain started, a new caller needs one"
    drain_started(server.pk)
    assert ann.state != "ready"


def test_a_drain_with_every_agent_busy_does_not_ask_the_media_blender(media_blender, make_agent, server, caplog):
    """Callers keep queuing while every agent is busy: each drain must not read the queue
    and ask the MB only to be told no. Proven with the MB killed: asking it would fail."""
    from sessions.services.drain import queue_drain
    from sessions.services.media_blender import agents_reconcile

    process, _ = media_blender
    make_agent("ann", "Sales")  # one slot
    assert agents_reconcile(server_id=server.pk)
    sales = server.skill_groups.get(name="Sales")
    busy = SessionFactory(server=server, skill_group=sales)
    assert queue_drain(server_id=server.pk) == 1
    waiting = SessionFactory(server=server, skill_group=sales)
    process.kill()

    with caplog.at_level("WARNING", logger="sessions.services.drain"):
        assert queue_drain(server_id=server.pk) == 0

    assert [r.getMessage() for r in caplog.records if r.name == "sessions.services.drain"] == []
    busy.refresh_from_db()
    waiting.refresh_from_db()
    assert (busy.state, waiting.state) == (SessionState.IN_TRANSIT, SessionState.QUEUED)
