"""Issue 4, point 3: a queue of sessions, some active, some in transit, some queued, when
the connected Media Blender is SIGKILLed. Every session's fate is asserted.

Real simulator processes, the real monitor (events and switchover), Celery eagerly: the
switchover's follow-up runs the moment the switchover commits, as a waiting worker would.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from failover.choices import AuditAction
from failover.models import AuditEntry, Link
from failover.monitor.runner import monitor_in_thread
from sessions.choices import ROUTED_STATES, SessionState
from sessions.models import Agent, CollaborationSession
from sessions.services.lifecycle import agent_set_ready
from sessions.services.requests import session_request
from sessions.services.timeouts import sessions_requeue_expired_transits
from tests.sessions.conftest import connected_peer, mb_agents, mb_call, mb_routes, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

NEVER_MS = 600_000  # a confirmation delay no test waits for: the route stays in transit


def request(group: str) -> CollaborationSession:
    return session_request(caller_name=f"{group} caller", skill_group_name=group, actor="caller")


def states(*sessions: CollaborationSession) -> list[str]:
    return [CollaborationSession.objects.get(pk=s.pk).state for s in sessions]


def test_every_session_keeps_a_fate_when_the_connected_media_blender_is_killed(
    server, simulated_pair, make_agent, groups
):
    link, processes = simulated_pair
    make_agent("ann", "Sales", max_sessions=2)
    make_agent("bob", "Sales")
    cid = make_agent("cid", "Support", max_sessions=2)
    make_agent("dee", "Billing")

    with monitor_in_thread():
        wait_until(lambda: connected_peer(link), timeout=10, message="a Media Blender connected")
        old_peer = connected_peer(link)
        old, new = processes[old_peer.name], processes[({"mb-1", "mb-2"} - {old_peer.name}).pop()]
        wait_until(lambda: len(mb_agents(old)) == 4, timeout=5, message="agents registered at start-up")

        # Active: routed and confirmed (through the monitor) by the old MB.
        active = [request("Sales"), request("Support")]
        wait_until(lambda: states(*active) == ["active"] * 2, timeout=5, message="first sessions active")
        before = {s.pk: CollaborationSession.objects.values().get(pk=s.pk) for s in active}

        # In transit: the old MB answers but will not confirm before it dies.
        mb_call(old, "configure", confirm_delay_ms=NEVER_MS)
        in_transit = [request("Sales"), request("Sales"), request("Support")]
        wait_until(lambda: states(*in_transit) == ["in_transit"] * 3, timeout=5, message="routes in transit")
        # cid goes not ready while its second session is being connected: the new MB
        # will not give it back to cid, and no other agent takes support.
        support_transit = in_transit[2]
        assert CollaborationSession.objects.get(pk=support_transit.pk).agent == cid
        agent_set_ready(agent_id=cid.pk, ready=False, actor=cid.user)
        # The old MB lost dee's registration (as a restarted MB does): billing queues.
        mb_call(old, "unregister_agent", agent_id="dee")

        # Queued: no free slot for sales, nobody ready for support, billing unknown to the MB.
        queued = [request("Sales"), request("Billing"), request("Support")]
        assert states(*queued) == ["queued"] * 3
        sales_queued, billing_queued, support_queued = queued
        old_epoch = Link.objects.get(pk=link.pk).epoch
        holders = {s.pk: CollaborationSession.objects.get(pk=s.pk).agent_id for s in in_transit}

        old.kill()

        wait_until(
            lambda: connected_peer(link) and connected_peer(link).name != old_peer.name, timeout=5, message="switch"
        )
        new_epoch = Link.objects.get(pk=link.pk).epoch
        # Re-asked of the new MB, the sales transits and the billing session are confirmed by it.
        confirmed = [in_transit[0], in_transit[1], billing_queued]
        wait_until(lambda: states(*confirmed) == ["active"] * 3, timeout=5, message="new MB confirmations")
        new_agents = mb_agents(new)
        new_routes = mb_routes(new)

    # Active sessions were not touched, but for their phone leg: the old MB carried it, so
    # its state is unknown now (issue 20, point 1).
    phone_fields = {"phone_leg", "phone_unknown_at", "phone_note"}
    for session in active:
        after = CollaborationSession.objects.values().get(pk=session.pk)
        assert {k: v for k, v in after.items() if k not in phone_fields} == {
            k: v for k, v in before[session.pk].items() if k not in phone_fields
        }
        assert (before[session.pk]["phone_leg"], after["phone_leg"]) == ("connected", "unknown")

    # Agents were re-registered with the new MB as part of the switchover, with their
    # readiness and the slots the database says they have left.
    for agent in Agent.objects.filter(server=server).prefetch_related("skill_groups"):
        held = {str(pk) for pk in agent.sessions.filter(state__in=ROUTED_STATES).values_list("pk", flat=True)}
        registration = new_agents[agent.icm_id]
        unknown_to_mb = held - set(registration["sessions"])
        assert registration["max_sessions"] == max(agent.max_sessions - len(unknown_to_mb), 1)
        slots_left = agent.max_sessions - len(unknown_to_mb) > 0
        assert registration["state"] == ("ready" if agent.state == "ready" and slots_left else "not_ready")
        assert registration["skill_groups"][:-1] == sorted(g.icm_id for g in agent.skill_groups.all())

    # The support transit could not be re-routed; after the transit timeout it is back at
    # the head of the support queue, with an event.
    support_before = CollaborationSession.objects.get(pk=support_transit.pk)
    assert (support_before.state, support_before.route_epoch) == (SessionState.IN_TRANSIT, old_epoch)
    assert sessions_requeue_expired_transits(now=timezone.now() + timedelta(seconds=3)) == 1
    requeued = CollaborationSession.objects.get(pk=support_transit.pk)
    assert (requeued.state, requeued.agent, requeued.route_epoch) == (SessionState.QUEUED, None, None)
    assert requeued.queued_at == support_before.queued_at
    support_queue = CollaborationSession.objects.filter(state="queued", skill_group=groups["Support"])
    assert list(support_queue.order_by("queued_at").values_list("pk", flat=True)) == [
        support_transit.pk,
        support_queued.pk,
    ]
    assert AuditEntry.objects.filter(object_id=str(support_transit.pk), action=AuditAction.SESSION_REQUEUED).exists()

    # No session lost or duplicated.
    everyone = [*active, *in_transit, *queued]
    fates = Counter(states(*everyone))
    assert fates == {"active": 5, "queued": 3}
    assert states(sales_queued) == ["queued"]  # sales is still full
    for agent in Agent.objects.filter(server=server):
        assert agent.sessions.filter(state__in=ROUTED_STATES).count() <= agent.max_sessions
    routed_by_new = CollaborationSession.objects.filter(state__in=ROUTED_STATES, route_epoch=new_epoch)
    assert sorted((r["session_id"], r["agent_id"]) for r in new_routes) == sorted(
        (str(s.pk), s.agent.icm_id) for s in routed_by_new.select_related("agent")
    )
    assert {str(s.pk) for s in confirmed} == {r["session_id"] for r in new_routes}
    # The re-asked transits went back to the agents that held them (their slot was kept).
    assert {s.pk: CollaborationSession.objects.get(pk=s.pk).agent_id for s in in_transit[:2]} == {
        s.pk: holders[s.pk] for s in in_transit[:2]
    }
