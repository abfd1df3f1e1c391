"""Issue 4 audit: the end-to-end paths the other tests cover only in halves.

Real Media Blender simulator processes, the real monitor (events and switchovers), the
real ASGI application on ``/ws/agent/`` with the real Redis channel layer, the Agent
desktop's own HTTP views, Celery eagerly (a task sent on commit runs at once, as if a
worker were waiting). Nothing stands in for the thing under test.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.utils import timezone

from failover.choices import AuditAction, Health
from failover.models import AuditEntry, Server
from failover.monitor.runner import monitor_in_thread
from failover.services.servers import server_health_changed
from sessions.choices import AgentState, EndReason, LogoutReason, SessionState
from sessions.models import CollaborationSession
from sessions.services.timeouts import sessions_requeue_expired_transits
from tests.desktop.conftest import logged_in, routed_session
from tests.factories import PASSWORD, AgentFactory, ServerFactory, SessionFactory, SkillGroupFactory
from tests.sessions.conftest import connected_peer, mb_agent_state, mb_agents, mb_call, mb_routes, wait_until
from tests.websockets import open_socket, run, session_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

NEVER_MS = 600_000  # a confirmation delay no test waits for: the route stays in transit
RECEIVE_TIMEOUT = 5


async def next_event(socket, *, want: Any) -> list[dict]:
    """Read events (heartbeats skipped) until ``want(event)``; return every one read. Fails
    after RECEIVE_TIMEOUT seconds in all (heartbeats keep a quiet socket talking)."""
    seen: list[dict] = []
    deadline = time.monotonic() + RECEIVE_TIMEOUT
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no matching event within {RECEIVE_TIMEOUT} s; saw {seen}")
        message = await socket.receive_json_from(timeout=left)
        if message["type"] == "heartbeat":
            continue
        seen.append(message)
        if want(message):
            return seen


def session_event(session_id: str, **fields: object):
    def want(message: dict) -> bool:
        data = message.get("data") or {}
        return (
            message["type"] == "session.changed"
            and data.get("id") == session_id
            and all(data.get(k) == v for k, v in fields.items())
        )

    return want


@pytest.fixture
def connected(simulated_pair, groups, server):
    """The monitor running and one Media Blender connected; yields (connected process, agent)."""
    link, processes = simulated_pair
    agent = AgentFactory(server=server, icm_id="ann", user__username="ann")
    agent.skill_groups.set([groups["Sales"]])
    with monitor_in_thread():
        peer = wait_until(lambda: connected_peer(link), timeout=10, message="a Media Blender connected")
        yield processes[peer.name], agent


def desktop_log_in(agent) -> Client:
    client = Client()
    response = client.post("/agent/login/", {"username": agent.user.username, "password": PASSWORD})
    assert response.status_code == 302, response.content
    return client


def test_the_desktop_registers_readiness_with_the_media_blender_and_hears_every_step_live(connected):
    """Point 2 end to end: log in and go ready on the desktop -> registered with the real MB;
    a caller's request is routed, confirmed, hung up (by the MB) and ended with one click,
    each step pushed on /ws/agent/ as it happens."""
    mb, agent = connected

    desk = desktop_log_in(agent)
    wait_until(lambda: mb_agents(mb).get("ann", {}).get("state") == "not_ready", timeout=5, message="logged in")
    cookie = session_cookie(agent.user)
    caller = Client()

    async def scenario() -> dict[str, list[dict]]:
        socket = open_socket("/ws/agent/", cookie=cookie)
        assert (await socket.connect(timeout=RECEIVE_TIMEOUT))[0]
        snapshot = await socket.receive_json_from(timeout=RECEIVE_TIMEOUT)
        assert snapshot["type"] == "snapshot"
        assert snapshot["data"]["sessions"] == []
        seen: dict[str, list[dict]] = {}

        response = await sync_to_async(desk.post)("/agent/state/", {"ready": "1"})
        assert response.status_code == 302
        seen["ready"] = await next_event(
            socket, want=lambda m: m["type"] == "agent.changed" and m["data"]["state"] == AgentState.READY
        )
        assert (await sync_to_async(mb_agents)(mb))["ann"]["state"] == "ready"

        response = await sync_to_async(caller.post)(
            "/request/", {"caller_name": "Ada Lovelace", "skill_group": "Sales"}
        )
        assert response.status_code == 302, response.content
        session_id = response["Location"].strip("/").split("/")[-1]
        seen["active"] = await next_event(socket, want=session_event(session_id, state=SessionState.ACTIVE))

        hung_up = await sync_to_async(mb.ctl)("hangup", session_id)
        assert hung_up.returncode == 0, hung_up.stderr
        seen["hung_up"] = await next_event(socket, want=session_event(session_id, phone_leg="hung_up"))

        response = await sync_to_async(desk.post)(f"/agent/sessions/{session_id}/end/")
        assert response.status_code == 302
        seen["ended"] = await next_event(
            socket, want=session_event(session_id, state=SessionState.ENDED, end_reason=EndReason.AGENT_ENDED)
        )
        seen["id"] = [{"id": session_id}]
        await socket.disconnect()
        return seen

    seen = run(scenario)

    session_id = seen["id"][0]["id"]
    states = [m["data"]["state"] for m in seen["active"] if m["type"] == "session.changed"]
    assert states == [SessionState.IN_TRANSIT, SessionState.ACTIVE]  # routed, then confirmed, each live
    assert seen["hung_up"][-1]["data"]["state"] == SessionState.ACTIVE  # the hang-up does not end it
    wait_until(lambda: mb_routes(mb) == [], timeout=5, message="the route released at the MB")
    actions = AuditEntry.objects.filter(object_id=session_id).order_by("pk").values_list("action", flat=True)
    assert list(actions) == [
        AuditAction.SESSION_REQUESTED,
        AuditAction.SESSION_ROUTED,
        AuditAction.SESSION_ACTIVATED,
        AuditAction.SESSION_PHONE_HUNG_UP,
        AuditAction.SESSION_ENDED,
    ]

    # Not ready on the desktop reaches the MB too.
    assert desk.post("/agent/state/", {"ready": "0"}).status_code == 302
    wait_until(lambda: mb_agent_state(mb, "ann") == "not_ready", timeout=5, message="not ready at the MB")


def test_a_transit_that_times_out_is_pushed_back_to_the_queue_live_and_drained_again(connected):
    """Point 3's requeue, as the agent sees it: the session leaves its desktop live (an event),
    is back at the head of the queue, and is routed again without waiting for a poll."""
    mb, agent = connected
    desk = desktop_log_in(agent)
    desk.post("/agent/state/", {"ready": "1"})
    wait_until(lambda: mb_agents(mb).get("ann", {}).get("state") == "ready", timeout=5, message="ready")
    mb_call(mb, "configure", confirm_delay_ms=NEVER_MS)
    cookie = session_cookie(agent.user)

    response = Client().post("/request/", {"caller_name": "Grace Hopper", "skill_group": "Sales"})
    session = CollaborationSession.objects.get(pk=response["Location"].strip("/").split("/")[-1])
    wait_until(
        lambda: CollaborationSession.objects.get(pk=session.pk).state == SessionState.IN_TRANSIT,
        timeout=5,
        message="in transit",
    )
    queued_at = session.queued_at

    async def scenario() -> list[dict]:
        socket = open_socket("/ws/agent/", cookie=cookie)
        assert (await socket.connect(timeout=RECEIVE_TIMEOUT))[0]
        await socket.receive_json_from(timeout=RECEIVE_TIMEOUT)
        later = timezone.now() + timedelta(seconds=30)
        assert await sync_to_async(sessions_requeue_expired_transits)(now=later) == 1
        seen = await next_event(socket, want=session_event(str(session.pk), state=SessionState.QUEUED))
        seen += await next_event(socket, want=session_event(str(session.pk), state=SessionState.IN_TRANSIT))
        await socket.disconnect()
        return seen

    seen = run(scenario)

    assert [m["data"]["state"] for m in seen if m["type"] == "session.changed"][-2:] == ["queued", "in_transit"]
    again = CollaborationSession.objects.get(pk=session.pk)
    assert (again.state, again.agent_id, again.queued_at) == (SessionState.IN_TRANSIT, agent.pk, queued_at)
    assert AuditEntry.objects.filter(object_id=str(session.pk), action=AuditAction.SESSION_REQUEUED).count() == 1
    assert [r["session_id"] for r in mb_routes(mb)] == [str(session.pk)]  # one route, no duplicate


def test_a_server_failure_is_pushed_live_to_the_agents_desktop(db):
    """Points 1 and 4: the failure's bulk end of sessions and log-ins reaches the agent's
    open desktop as events at once, not at its 30 s resync."""
    failed = ServerFactory(name="routing-a", base_url="http://127.0.0.1:1")
    ServerFactory(name="routing-b", base_url="http://127.0.0.1:2")
    Server.objects.update(health=Health.UP)
    agent = logged_in(AgentFactory(server=failed, user__username="ann"), AgentState.READY)
    session = routed_session(agent, caller_name="Ada Lovelace")
    cookie = session_cookie(agent.user)
    ended = session_event(str(session.pk), state=SessionState.ENDED, end_reason=EndReason.SERVER_FAILED)

    def logged_out(message: dict) -> bool:
        data = message.get("data") or {}
        return (
            message["type"] == "agent.changed"
            and data.get("id") == agent.pk
            and data.get("state") == AgentState.LOGGED_OUT
            and data.get("logout_reason") == LogoutReason.SERVER_FAILED
        )

    async def scenario() -> list[dict]:
        socket = open_socket("/ws/agent/", cookie=cookie)
        assert (await socket.connect(timeout=RECEIVE_TIMEOUT))[0]
        await socket.receive_json_from(timeout=RECEIVE_TIMEOUT)
        await sync_to_async(server_health_changed)(
            server_id=failed.pk, health=Health.DOWN, at=timezone.now(), error="refused"
        )
        seen: list[dict] = []
        # Both events, in whichever order they arrive.
        seen += await next_event(socket, want=lambda m: ended(m) or logged_out(m))
        seen += await next_event(socket, want=logged_out if ended(seen[-1]) else ended)
        await socket.disconnect()
        return seen

    seen = run(scenario)

    assert any(ended(m) for m in seen)
    assert any(logged_out(m) for m in seen)


def test_queued_sessions_adopted_after_a_server_failure_are_drained_by_the_survivor_at_once(
    media_blender, make_agent, server, groups
):
    """Point 4's adoption: the survivor routes the adopted session through its real Media
    Blender as soon as the failure commits, without waiting for the beat's safety net."""
    process, _ = media_blender
    ann = make_agent("ann", "Sales")
    failed = ServerFactory(name="routing-b", base_url="http://127.0.0.1:1")
    Server.objects.filter(pk=failed.pk).update(health=Health.UP)
    failed_sales = SkillGroupFactory(server=failed, name="Sales", icm_id=groups["Sales"].icm_id)
    queued = SessionFactory(server=failed, skill_group=failed_sales)

    server_health_changed(server_id=failed.pk, health=Health.DOWN, at=timezone.now(), error="refused")

    queued.refresh_from_db()
    assert (queued.server_id, queued.adopted_from_id) == (server.pk, failed.pk)
    assert (queued.state, queued.agent_id, queued.skill_group_id) == (
        SessionState.IN_TRANSIT,
        ann.pk,
        groups["Sales"].pk,
    )
    assert [r["session_id"] for r in mb_routes(process)] == [str(queued.pk)]
