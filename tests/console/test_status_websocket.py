"""/ws/status/ through the real ASGI application and the real Redis channel layer: who is
refused, the snapshot first, then every change with a higher sequence number.

Transactional tests: the consumer reads the database from its own thread, and the live
events leave only after a real commit (``transaction.on_commit``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from common import live, roles
from console.consumers import CLOSE_FORBIDDEN, CLOSE_NOT_AUTHENTICATED, socket_options
from failover.choices import PeerKind
from failover.services.switchover import link_switchover
from sessions.choices import EndReason
from sessions.services.lifecycle import agent_login, session_end
from tests.factories import AlertFactory, SessionFactory, role_user
from tests.websockets import TIMEOUT, open_socket, refused_with, run, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

PATH = "/ws/status/"
communicator = partial(open_socket, PATH)


# --- Who is refused ----------------------------------------------------------------------------


def test_an_anonymous_socket_is_refused_with_4401():
    async def scenario() -> int:
        return await refused_with(communicator())

    assert run(scenario) == CLOSE_NOT_AUTHENTICATED


def test_an_agent_is_refused_with_4403(agent):
    cookie = session_cookie(agent.user)

    async def scenario() -> int:
        return await refused_with(communicator(cookie=cookie))

    assert run(scenario) == CLOSE_FORBIDDEN


def test_a_foreign_origin_is_refused_before_the_consumer_runs(admin_user):
    cookie = session_cookie(admin_user)

    async def scenario() -> tuple[bool, Any]:
        socket = communicator(cookie=cookie, origin="https://evil.example")
        result = await socket.connect(timeout=TIMEOUT)
        await socket.disconnect()
        return result

    connected, _ = run(scenario)

    assert not connected  # the handshake itself is rejected (HTTP 403)


# --- Snapshot, then every change ----------------------------------------------------------------


def test_the_snapshot_comes_first_with_the_status_shape_and_the_current_sequence(admin_user, pair):
    AlertFactory(server=pair.server, message="Media Blender link down")
    seq_before = live.current_sequence()
    cookie = session_cookie(admin_user)

    async def scenario() -> dict:
        socket = communicator(cookie=cookie)
        assert (await socket.connect(timeout=TIMEOUT))[0]
        snapshot = await socket.receive_json_from(timeout=TIMEOUT)
        await socket.disconnect()
        return snapshot

    snapshot = run(scenario)

    assert snapshot["type"] == "snapshot"
    assert isinstance(snapshot["seq"], int)
    assert snapshot["seq"] >= seq_before
    data = snapshot["data"]
    assert set(data) >= {"generated_at", "servers", "session_counts", "alerts"}
    (server,) = data["servers"]
    assert server["name"] == "routing-a"
    link = next(link for link in server["links"] if link["kind"] == PeerKind.MEDIA_BLENDER)
    assert (link["id"], link["epoch"], link["active_peer"]["name"]) == (pair.pk, 3, "mb-1")
    assert [(p["name"], p["display_state"]) for p in link["peers"]] == [("mb-1", "connected"), ("mb-2", "standby")]
    assert [alert["message"] for alert in data["alerts"]] == ["Media Blender link down"]


def test_a_switchover_arrives_as_a_link_changed_event_with_a_higher_sequence(admin_user, pair):
    user = get_user_model().objects.get(pk=admin_user.pk)  # loaded here: no lazy ORM reads in the scenario
    cookie = session_cookie(user)

    async def scenario() -> tuple[dict, dict]:
        socket = communicator(cookie=cookie)
        assert (await socket.connect(timeout=TIMEOUT))[0]
        snapshot = await socket.receive_json_from(timeout=TIMEOUT)
        await sync_to_async(link_switchover)(link_id=pair.pk, actor=user, reason="planned work on mb-1")
        event = await socket.receive_json_from(timeout=TIMEOUT)
        while event["type"] != "link.changed":  # other changes of the same commit may come first
            event = await socket.receive_json_from(timeout=TIMEOUT)
        await socket.disconnect()
        return snapshot, event

    snapshot, event = run(scenario)

    assert event["seq"] > snapshot["seq"]
    assert event["data"] == {
        **event["data"],
        "link": pair.pk,
        "server": "routing-a",
        "from_peer": "mb-1",
        "to_peer": "mb-2",
        "epoch": 4,
        "reason": "planned work on mb-1",
    }


def test_a_user_made_non_superuser_is_closed_at_once(admin_user, pair):
    user = get_user_model().objects.get(pk=admin_user.pk)
    cookie = session_cookie(user)

    def demote() -> None:
        user.is_superuser = False  # admin_user holds no role: nothing left
        user.save()  # as the Django admin or a script does

    async def scenario() -> dict:
        socket = communicator(cookie=cookie)
        assert (await socket.connect(timeout=TIMEOUT))[0]
        await socket.receive_json_from(timeout=TIMEOUT)
        await sync_to_async(demote)()
        closed = await socket.receive_output(timeout=TIMEOUT)
        # Nothing reaches it any more: the next change is not forwarded.
        await sync_to_async(link_switchover)(link_id=pair.pk, actor="system:test", reason="test")
        return closed

    assert run(scenario) == {"type": "websocket.close", "code": CLOSE_FORBIDDEN}


@pytest.mark.parametrize("from_side", ["user", "group"])
def test_a_viewer_is_let_in_and_closed_at_once_when_its_role_is_taken_away(pair, from_side):
    viewer = role_user(roles.VIEWER, username="watcher")
    cookie = session_cookie(viewer)
    group = Group.objects.get(name=roles.VIEWER.group)

    def take_role_away() -> None:
        # As the Django admin does: from the user's form, or from the group's side.
        viewer.groups.remove(group) if from_side == "user" else group.user_set.remove(viewer)

    async def scenario() -> dict:
        socket = communicator(cookie=cookie)
        assert (await socket.connect(timeout=TIMEOUT))[0]
        assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
        await sync_to_async(take_role_away)()
        return await socket.receive_output(timeout=TIMEOUT)

    assert run(scenario) == {"type": "websocket.close", "code": CLOSE_FORBIDDEN}


def test_a_demotion_that_bypasses_save_closes_the_socket_within_a_heartbeat(admin_user, pair, settings):
    settings.LIVE_HEARTBEAT_SECONDS = 0.2
    cookie = session_cookie(admin_user)

    async def scenario() -> dict:
        socket = communicator(cookie=cookie)
        assert (await socket.connect(timeout=TIMEOUT))[0]
        await socket.receive_json_from(timeout=TIMEOUT)
        await sync_to_async(get_user_model().objects.filter(pk=admin_user.pk).update)(is_active=False)
        while True:  # heartbeats until the re-check notices
            output = await socket.receive_output(timeout=TIMEOUT)
            if output["type"] == "websocket.close":
                return output

    assert run(scenario) == {"type": "websocket.close", "code": CLOSE_FORBIDDEN}


def test_whatever_the_browser_sends_is_ignored(admin_user):
    cookie = session_cookie(admin_user)

    async def scenario() -> bool:
        socket = communicator(cookie=cookie)
        assert (await socket.connect(timeout=TIMEOUT))[0]
        await socket.receive_json_from(timeout=TIMEOUT)
        await socket.send_to(text_data="{not json")
        quiet = await socket.receive_nothing(timeout=0.2)
        await socket.disconnect()
        return quiet

    assert run(scenario)


def test_heartbeats_carry_the_redis_run_id_of_the_snapshot(admin_user, settings):
    """How a page learns that Redis restarted under it (common/heartbeat.py)."""
    settings.LIVE_HEARTBEAT_SECONDS = 0.1
    cookie = session_cookie(admin_user)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        socket = communicator(cookie=cookie)
        await socket.connect(timeout=TIMEOUT)
        try:
            snapshot = await socket.receive_json_from(timeout=TIMEOUT)
            return snapshot, await socket.receive_json_from(timeout=TIMEOUT)
        finally:
            await socket.disconnect()

    snapshot, heartbeat = run(scenario)
    assert snapshot["type"] == "snapshot"
    assert heartbeat == {"type": "heartbeat", "redis": snapshot["redis"]}
    assert snapshot["redis"] == live.redis_run_id()


# --- What a page ignores is not sent (issue 18) -------------------------------------------------


async def _types_until_link_changed(socket) -> list[str]:
    """The event types a socket receives after its snapshot, up to the switchover's."""
    assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
    types: list[str] = []
    while not types or types[-1] != "link.changed":
        types.append((await socket.receive_json_from(timeout=TIMEOUT))["type"])
    return types


def test_a_page_that_ignores_sessions_is_not_sent_session_or_agent_events(admin_user, pair, agent):
    """The overview shows no session: its socket (``?ignore=``) hears the switchover but
    none of the session and agent events published before it; a socket that asks nothing
    (a script) hears them all, in order."""
    user = get_user_model().objects.get(pk=admin_user.pk)
    cookie = session_cookie(user)
    session = SessionFactory(server=agent.server, caller_name="Ann")

    def changes() -> None:
        agent_login(agent_id=agent.pk, actor=user)
        session_end(session_id=session.pk, actor=user, reason=EndReason.CALLER_LEFT)
        link_switchover(link_id=pair.pk, actor=user, reason="planned work on mb-1")

    async def scenario() -> tuple[list[str], list[str]]:
        overview = open_socket(f"{PATH}?ignore=session.changed,agent.changed", cookie=cookie)
        script = communicator(cookie=cookie)
        assert (await overview.connect(timeout=TIMEOUT))[0]
        assert (await script.connect(timeout=TIMEOUT))[0]
        await sync_to_async(changes)()
        try:
            return await _types_until_link_changed(overview), await _types_until_link_changed(script)
        finally:
            await overview.disconnect()
            await script.disconnect()

    overview_types, script_types = run(scenario)

    assert "session.changed" in script_types
    assert "agent.changed" in script_types
    assert script_types.index("agent.changed") < script_types.index("session.changed")
    assert not {"session.changed", "agent.changed"} & set(overview_types)
    assert overview_types[-1] == "link.changed"


def test_a_page_that_ignores_one_type_of_a_topic_still_hears_the_other(admin_user, agent):
    cookie = session_cookie(admin_user)
    session = SessionFactory(server=agent.server, caller_name="Ann")

    def changes() -> None:
        session_end(session_id=session.pk, actor="system:test", reason=EndReason.CALLER_LEFT)
        agent_login(agent_id=agent.pk, actor="system:test")

    async def scenario() -> list[str]:
        socket = open_socket(f"{PATH}?ignore=session.changed", cookie=cookie)
        assert (await socket.connect(timeout=TIMEOUT))[0]
        assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
        await sync_to_async(changes)()
        try:
            return [(await socket.receive_json_from(timeout=TIMEOUT))["type"]]
        finally:
            await socket.disconnect()

    assert run(scenario) == ["agent.changed"]  # the session's end, published first, was not sent


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"", frozenset()),
        (b"ignore=session.changed,agent.changed", frozenset({"session.changed", "agent.changed"})),
        (b"ignore=session.changed%20agent.changed", frozenset({"session.changed", "agent.changed"})),
        (b"ignore=&other=1", frozenset()),
    ],
)
def test_the_ignored_types_are_read_from_the_query_string(query, expected):
    assert socket_options(query)[0] == expected


def test_a_socket_joins_a_topic_group_unless_it_ignores_every_type_of_it():
    assert live.status_socket_groups(set()) == [live.STATUS_GROUP, live.SESSIONS_GROUP]
    assert live.status_socket_groups({"session.changed"}) == [live.STATUS_GROUP, live.SESSIONS_GROUP]
    assert live.status_socket_groups({"session.changed", "agent.changed"}) == [live.STATUS_GROUP]


# --- A page's socket coalesces (issue 18) --------------------------------------------------------


def _burst(count: int) -> int:
    """``count`` events through the real sender, back to back; the last one's number."""
    for index in range(count):
        live.send_now("test.changed", {"n": index}, [live.STATUS_GROUP])
    assert live.flush()
    return live.current_sequence()


@pytest.mark.parametrize(("query", "coalesced"), [("?coalesce=1", True), ("", False)])
def test_a_page_that_asks_gets_the_newest_event_of_a_burst_and_a_script_gets_every_one(admin_user, query, coalesced):
    cookie = session_cookie(admin_user)

    async def scenario() -> tuple[list[int], int]:
        socket = open_socket(f"{PATH}{query}", cookie=cookie)
        assert (await socket.connect(timeout=TIMEOUT))[0]
        assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
        last = await sync_to_async(_burst)(20)
        received: list[int] = []
        try:
            while not received or received[-1] < last:
                event = await socket.receive_json_from(timeout=TIMEOUT)
                if event["type"] == "test.changed":
                    received.append(event["seq"])
            quiet = await socket.receive_nothing(timeout=0.5)
        finally:
            await socket.disconnect()
        assert quiet
        return received, last

    received, last = run(scenario)

    assert received[-1] == last  # the newest always arrives: it covers the ones left out
    assert received == sorted(received)
    if coalesced:
        assert len(received) <= 3  # the first at once, then one per 200 ms window
    else:
        assert len(received) == 20
