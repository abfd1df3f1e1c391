"""Two drains at once, with the Redis lock taken away: correctness must come from the
database's compare-and-set alone (the lock only saves duplicate work)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from sessions.choices import ROUTED_STATES, SessionState
from sessions.models import Agent, CollaborationSession
from sessions.services import drain
from sessions.services.drain import queue_drain
from sessions.services.media_blender import agent_sync
from sessions.services.timeouts import sessions_requeue_expired_transits
from tests.factories import SessionFactory
from tests.sessions.conftest import mb_routes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def in_transit() -> set[tuple[str, str]]:
    rows = CollaborationSession.objects.filter(state=SessionState.IN_TRANSIT).select_related("agent")
    return {(str(s.pk), s.agent.icm_id) for s in rows}


def test_two_drains_without_the_lock_never_route_a_session_twice_nor_overload_an_agent(
    media_blender, make_agent, server, monkeypatch
):
    process, _ = media_blender
    for name in ("ann", "bob"):
        assert agent_sync(agent_id=make_agent(name, max_sessions=2).pk)
    for minutes in range(6, 0, -1):
        SessionFactory(server=server, queued_at=timezone.now() - timedelta(minutes=minutes))
    monkeypatch.setattr(drain.DrainCoordinator, "acquire", lambda self: True)
    monkeypatch.setattr(drain.DrainCoordinator, "pending", lambda self: False)
    start = threading.Barrier(2)

    def drainer() -> None:
        try:
            start.wait()
            queue_drain(server_id=server.pk)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=drainer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # Whatever the interleaving: no agent over its slots, every MB route is one the
    # database holds (a lost race was released), the oldest sessions went first.
    for agent in Agent.objects.all():
        assert agent.sessions.filter(state__in=ROUTED_STATES).count() <= agent.max_sessions
    routes = {(r["session_id"], r["agent_id"]) for r in mb_routes(process)}
    assert routes <= in_transit()
    # A transit whose MB route a racing drain released is requeued by the timeout and
    # routed again: the two views then agree exactly, with every slot used.
    sessions_requeue_expired_transits(now=timezone.now() + timedelta(minutes=1))
    queue_drain(server_id=server.pk)
    assert {(r["session_id"], r["agent_id"]) for r in mb_routes(process)} == in_transit()
    assert len(in_transit()) == 4
    oldest = CollaborationSession.objects.order_by("queued_at")[:4]
    assert {str(s.pk) for s in oldest} == {sid for sid, _ in in_transit()}
