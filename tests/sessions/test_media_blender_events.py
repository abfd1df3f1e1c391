"""Events the Media Blender pushes, delivered by the real monitor from real simulator
processes: route confirmations (only the connected MB's count) and the caller hanging up."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from celery.signals import task_postrun
from django.utils import timezone

from failover.choices import AuditAction
from failover.models import AuditEntry, Policy
from failover.monitor.runner import monitor_in_thread
from sessions.choices import EndReason, PhoneLeg, SessionState
from sessions.models import CollaborationSession
from sessions.services.lifecycle import session_end
from sessions.services.requests import session_request
from sessions.services.timeouts import sessions_end_hung_up_after_grace
from tests.sessions.conftest import connected_peer, mb_agents, mb_call, mb_routes, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def connected(simulated_pair, make_agent) -> Iterator[tuple]:
    """The monitor running, one MB connected with ``ann`` (sales) registered and ready;
    yields (connected process, standby process)."""
    link, processes = simulated_pair
    make_agent("ann", "Sales")
    finished: list[str] = []

    def record(sender=None, **kwargs) -> None:
        finished.append(sender.name)

    # The connection's follow-up registers the agents and then drains under the drain lock:
    # a caller's drain that finds the lock held leaves its session to the holder, so the
    # tests, which expect their own drain to route at once, start after the follow-up.
    task_postrun.connect(record, weak=False)
    try:
        with monitor_in_thread():
            peer = wait_until(lambda: connected_peer(link), timeout=10, message="a Media Blender connected")
            active, standby = processes[peer.name], processes[({"mb-1", "mb-2"} - {peer.name}).pop()]
            wait_until(lambda: "ann" in mb_agents(active), timeout=5, message="ann registered")
            wait_until(
                lambda: "sessions.after_media_blender_switchover" in finished,
                timeout=10,
                message="the connection's follow-up finished",
            )
            yield active, standby
    finally:
        task_postrun.disconnect(record)


def request() -> CollaborationSession:
    return session_request(caller_name="Caller", skill_group_name="Sales", actor="caller")


def fresh(session: CollaborationSession) -> CollaborationSession:
    return CollaborationSession.objects.get(pk=session.pk)


def test_a_requested_session_becomes_active_when_the_connected_media_blender_confirms(connected):
    active_mb, _ = connected

    session = request()

    wait_until(lambda: fresh(session).state == SessionState.ACTIVE, timeout=5, message="confirmed")
    session_end(session_id=session.pk, actor="user:ann", reason=EndReason.AGENT_ENDED)
    assert fresh(session).state == SessionState.ENDED
    assert mb_routes(active_mb) == []
    actions = AuditEntry.objects.filter(object_id=str(session.pk)).order_by("pk").values_list("action", flat=True)
    assert list(actions) == ["session.requested", "session.routed", "session.activated", "session.ended"]


def test_a_confirmation_pushed_by_the_standby_media_blender_is_ignored(connected):
    active_mb, standby_mb = connected
    mb_call(active_mb, "configure", confirm_delay_ms=600_000)
    session = request()
    assert fresh(session).state == SessionState.IN_TRANSIT
    ann = fresh(session).agent.icm_id
    mb_call(standby_mb, "register_agent", agent_id=ann, skill_groups=["SG-sales"], state="ready")

    mb_call(standby_mb, "route", session_id=str(session.pk), skill_group="SG-sales")
    wait_until(lambda: mb_routes(standby_mb)[0]["confirmed"], timeout=5, message="standby confirmed its route")
    # A barrier: events are handled in order, so once this hang-up (from the connected
    # MB) is recorded, the standby's earlier confirmation has been handled too.
    assert active_mb.ctl("hangup", str(session.pk)).returncode == 0
    wait_until(lambda: fresh(session).phone_leg == PhoneLeg.HUNG_UP, timeout=5, message="hang-up recorded")

    assert fresh(session).state == SessionState.IN_TRANSIT


def test_a_caller_who_hangs_up_leaves_the_session_active_until_the_grace_policy_ends_it(connected):
    active_mb, _ = connected
    session = request()
    wait_until(lambda: fresh(session).state == SessionState.ACTIVE, timeout=5, message="confirmed")

    assert active_mb.ctl("hangup", str(session.pk)).returncode == 0

    hung_up = wait_until(
        lambda: (s := fresh(session)).phone_leg == PhoneLeg.HUNG_UP and s, timeout=5, message="hang-up recorded"
    )
    assert hung_up.state == SessionState.ACTIVE
    assert hung_up.phone_hung_up_at is not None
    assert AuditEntry.objects.filter(object_id=str(session.pk), action=AuditAction.SESSION_PHONE_HUNG_UP).count() == 1
    # Without the policy the agent ends it; with it, only once the grace has passed.
    assert sessions_end_hung_up_after_grace(now=timezone.now() + timedelta(hours=1)) == 0
    Policy.objects.filter(pk=1).update(hung_up_grace_seconds=30)
    assert sessions_end_hung_up_after_grace(now=timezone.now()) == 0
    assert sessions_end_hung_up_after_grace(now=timezone.now() + timedelta(seconds=31)) == 1
    ended = fresh(session)
    assert (ended.state, ended.end_reason) == (SessionState.ENDED, EndReason.HANGUP_TIMEOUT)
    assert mb_routes(active_mb) == []
