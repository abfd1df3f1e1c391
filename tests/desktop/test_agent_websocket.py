"""/ws/agent/ through the real ASGI application and the real Redis channel layer: who is
refused, the snapshot first, then the agent's own events and nobody else's.

Transactional tests: the consumer reads the database from its own thread, and the live
events leave only after a real commit (``transaction.on_commit``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from common import live
from sessions.choices import AgentState, EndReason
from sessions.consumers import CLOSE_FORBIDDEN, CLOSE_NOT_AUTHENTICATED
from sessions.models import Agent
from sessions.services.lifecycle import agent_set_ready, session_end
from tests.desktop.conftest import logged_in, routed_session
from tests.factories import AgentFactory, UserFactory
from tests.websockets import TIMEOUT, open_socket, refused_with, run, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

PATH = "/ws/agent/"
communicator = partial(open_socket, PATH)


def test_the_channel_layer_is_the_real_redis_one_from_settings():
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"].startswith("channels_redis.")
    assert type(get_channel_layer()).__module__.startswith("channels_redis.")


# --- Who is refused ----------------------------------------------------------------------------


def test_an_anonymous_socket_is_refused_with_4401():
    async def scenario() -> int:
        return await refused_with(communicator())

    assert run(scenario) == CLOSE_NOT_AUTHENTICATED


def test_a_user_without_an_agent_is_refused_with_4403(db):
    visitor = UserFactory(username="visitor")

    cookie = session_cookie(visitor)

    async def scenario() -> int:
        return await refused_with(communicator(cookie=cookie))

    assert run(scenario) == CLOSE_FORBIDDEN


def test_staff_without_an_agent_is_refused_with_4403(admin_user):
    cookie = session_cookie(admin_user)

    async def scenario() -> int:
        return await refused_with(communicator(cookie=cookie))

    assert run(scenario) == CLOSE_FORBIDDEN


def test_a_disabled_agent_is_refused_with_4403(server):
    disabled = AgentFactory(server=server, enabled=False)

    cookie = session_cookie(disabled.user)

    async def scenario() -> int:
        return await refused_with(communicator(cookie=cookie))

    assert run(scenario) == CLOSE_FORBIDDEN


def test_a_foreign_origin_is_refused_before_the_consumer_runs(agent):
    cookie = session_cookie(agent.user)

    async def scenario() -> tuple[bool, Any]:
        socket = communicator(cookie=cookie, origin="https://evil.example")
        result = await socket.connect(timeout=TIMEOUT)
        await socket.disconnect()
        return result

    connected, _ = run(scenario)

    assert not connected  # the handshake itself is rejected (HTTP 403)


# --- Snapshot, then the agent's own events only ----------------------------------------------------


def test_the_snapshot_comes_first_with_the_agents_own_open_sessions_only(agent, other_agent):
    own = routed_session(logged_in(agent), caller_name="Ada Lovelace")
    ended = routed_session(agent, caller_name="Finished Caller")
    session_end(session_id=ended.pk, actor=agent.user, reason=EndReason.AGENT_ENDED)
    routed_session(logged_in(other_agent), caller_name="Grace Hopper")
    seq_before = live.current_sequence()

    cookie = session_cookie(agent.user)

    async def scenario() -> dict:
        socket = communicator(cookie=cookie)
        connected, _ = await socket.connect(timeout=TIMEOUT)
        assert connected
        snapshot = await socket.receive_json_from(timeout=TIMEOUT)
        await socket.disconnect()
        return snapshot

    snapshot = run(scenario)

    assert snapshot["type"] == "snapshot"
    assert snapshot["seq"] >= seq_before
    assert snapshot["data"]["agent"]["id"] == agent.pk
    assert snapshot["data"]["agent"]["state"] == AgentState.NOT_READY
    assert [s["id"] for s in snapshot["data"]["sessions"]] == [str(own.pk)]
    assert snapshot["data"]["sessions"][0]["caller_name"] == "Ada Lovelace"


def test_an_agent_hears_its_own_changes_and_not_another_agents(agent, other_agent):
    logged_in(agent)
    foreign = routed_session(logged_in(other_agent), caller_name="Grace Hopper")
    user, other_user = agent.user, other_agent.user  # loaded here: no lazy ORM reads in the scenario
    cookie = session_cookie(user)

    async def scenario() -> tuple[dict, list[dict]]:
        socket = communicator(cookie=cookie)
        assert (await socket.connect(timeout=TIMEOUT))[0]
        snapshot = await socket.receive_json_from(timeout=TIMEOUT)
        # The other agent's change is committed (and broadcast) first: if it leaked into
        # this agent's group it would arrive before the agent's own event below.
        await sync_to_async(session_end)(session_id=foreign.pk, actor=other_user, reason=EndReason.AGENT_ENDED)
        await sync_to_async(agent_set_ready)(agent_id=agent.pk, ready=True, actor=user)
        received = [await socket.receive_json_from(timeout=TIMEOUT)]
        assert await socket.receive_nothing(timeout=0.2)
        await socket.disconnect()
        return snapshot, received

    snapshot, received = run(scenario)

    (event,) = received
    assert event["type"] == "agent.changed"
    assert event["data"] == {**event["data"], "id": agent.pk, "state": AgentState.READY}
    assert event["seq"] > snapshot["seq"]


def test_a_session_change_of_the_agent_arrives_live(agent):
    own = routed_session(logged_in(agent), caller_name="Ada Lovelace")

    cookie = session_cookie(agent.user)

    async def scenario() -> dict:
        socket = communicator(cookie=cookie)
        assert (await socket.connect(timeout=TIMEOUT))[0]
        await socket.receive_json_from(timeout=TIMEOUT)
        await sync_to_async(session_end)(session_id=own.pk, actor=agent.user, reason=EndReason.AGENT_ENDED)
        event = await socket.receive_json_from(timeout=TIMEOUT)
        await socket.disconnect()
        return event

    event = run(scenario)

    assert event["type"] == "session.changed"
    assert (event["data"]["id"], event["data"]["state"], event["data"]["end_reason"]) == (
        str(own.pk),
        "ended",
        "agent_ended",
    )


def test_an_agent_disabled_while_connected_stops_hearing_and_is_closed(agent):
    own = routed_session(logged_in(agent))

    cookie = session_cookie(agent.user)

    async def scenario() -> dict:
        socket = communicator(cookie=cookie)
        assert (await socket.connect(timeout=TIMEOUT))[0]
        await socket.receive_json_from(timeout=TIMEOUT)
        # Configuration change in the admin; the constraint wants a disabled agent logged out.
        await sync_to_async(Agent.objects.filter(pk=agent.pk).update)(state=AgentState.LOGGED_OUT, enabled=False)
        await sync_to_async(session_end)(session_id=own.pk, actor="system:test", reason=EndReason.ADMIN_ENDED)
        closing = await socket.receive_output(timeout=TIMEOUT)
        return closing

    closing = run(scenario)

    assert closing == {"type": "websocket.close", "code": CLOSE_FORBIDDEN}


def test_whatever_the_browser_sends_is_ignored(agent):
    logged_in(agent)

    cookie = session_cookie(agent.user)

    async def scenario() -> bool:
        socket = communicator(cookie=cookie)
        assert (await socket.connect(timeout=TIMEOUT))[0]
        await socket.receive_json_from(timeout=TIMEOUT)
        await socket.send_to(text_data="{not json")
        await socket.send_json_to({"type": "session.end", "id": "anything"})
        quiet = await socket.receive_nothing(timeout=0.2)
        await socket.disconnect()
        return quiet

    assert run(scenario)
