"""Pushed fragments (console/pushed_fragments.py): a page's socket that asks for it gets the
render of its fragment with the event, rendered once for every socket of the view.

Through the real ASGI application, the real Redis channel layer and the real database
(transactional: the events leave after real commits; the render runs through Django on a
thread of its own).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from urllib.parse import quote

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session

from common import live, roles
from console.live_fragments import shared_renders
from console.pushed_fragments import pushable_target, pushed_views, shown_version
from failover.services.switchover import link_switchover
from sessions.choices import EndReason
from sessions.services.lifecycle import session_end
from tests.factories import ServerFactory, SessionFactory, role_user
from tests.websockets import TIMEOUT, open_socket, run, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

OVERVIEW = "/ws/status/?coalesce=1&ignore=session.changed,agent.changed&push=" + quote("/partials/overview/")
SESSIONS = "/ws/status/?coalesce=1&push=" + quote("/console/sessions/?fragment=1")


@pytest.fixture(autouse=True)
def fresh_renders():
    shared_renders.clear()
    yield
    shared_renders.clear()


async def _opened(path: str, cookie: str):
    socket = open_socket(path, cookie=cookie)
    assert (await socket.connect(timeout=TIMEOUT))[0]
    assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
    return socket


async def _next_of(socket, *types: str) -> dict:
    """The next message of one of ``types`` (heartbeats and the like skipped). A pushed
    fragment comes as gzipped JSON in a binary frame, the rest as JSON text."""
    while True:
        frame = await socket.receive_output(timeout=TIMEOUT)
        assert frame["type"] == "websocket.send", frame
        if frame.get("bytes") is not None:
            message = json.loads(gzip.decompress(frame["bytes"]))
            assert message["type"] == "fragment"  # the only binary message
        else:
            message = json.loads(frame["text"])
        if message["type"] in types:
            return message


def _switch(pair, reason: str) -> None:
    link_switchover(link_id=pair.pk, actor="system:test", reason=reason)


def _overview_message_after(cookie: str, change: Callable[[], None], sends: tuple[str, ...] = ()) -> dict:
    """What an overview socket is sent first (the render or the event) after ``change``,
    the socket having sent ``sends`` before it."""

    async def scenario() -> dict:
        socket = await _opened(OVERVIEW, cookie)
        for text in sends:
            await socket.send_to(text_data=text)
        await sync_to_async(change)()
        message = await _next_of(socket, "fragment", "link.changed")
        await socket.disconnect()
        return message

    return run(scenario)


def test_every_overview_socket_gets_the_render_with_the_switchover_made_once(admin_user, pair):
    cookie = session_cookie(admin_user)
    renders_before = pushed_views.renders

    async def scenario() -> list[dict]:
        sockets = [await _opened(OVERVIEW, cookie) for _ in range(3)]
        await sync_to_async(_switch)(pair, "planned work on mb-1")
        try:
            return [await _next_of(socket, "fragment", "link.changed") for socket in sockets]
        finally:
            for socket in sockets:
                await socket.disconnect()

    messages = run(scenario)

    assert [message["type"] for message in messages] == ["fragment"] * 3  # no plain event: nothing to fetch
    assert len({json.dumps(message) for message in messages}) == 1  # one render, the same message for all
    (message,) = {json.dumps(m): m for m in messages}.values()
    assert message["delta"] is None  # the pages named no render they show: the whole fragment
    assert "routing-a" in message["html"]
    assert "planned work on mb-1" in message["html"]
    assert isinstance(message["seq"], int)
    assert isinstance(message["rendered"], int)
    assert pushed_views.renders - renders_before == 1


def test_a_page_that_says_what_it_shows_gets_only_the_blocks_it_lacks(admin_user, pair):
    ServerFactory(name="routing-b")  # a card the switchover of routing-a leaves as it is
    cookie = session_cookie(admin_user)

    async def scenario() -> tuple[dict, dict]:
        socket = await _opened(OVERVIEW, cookie)
        await sync_to_async(_switch)(pair, "first switch")
        first = await _next_of(socket, "fragment")
        await socket.send_json_to({"type": "shown", "version": f"{first['seq']}.{first['rendered']}"})
        await sync_to_async(_switch)(pair, "second switch")
        second = await _next_of(socket, "fragment")
        await socket.disconnect()
        return first, second

    first, second = run(scenario)

    assert second["delta"] == f"{first['seq']}.{first['rendered']}"
    assert '<template data-keep="' in second["html"]  # routing-b's card: the page has it
    assert "second switch" in second["html"]
    assert len(second["html"]) < len(first["html"])


def test_a_page_that_shows_another_render_gets_the_whole_fragment(admin_user, pair):
    cookie = session_cookie(admin_user)

    async def scenario() -> tuple[dict, dict]:
        socket = await _opened(OVERVIEW, cookie)
        await sync_to_async(_switch)(pair, "first switch")
        first = await _next_of(socket, "fragment")
        # The page fetched meanwhile and shows a render this node never made.
        await socket.send_json_to({"type": "shown", "version": "1.1"})
        await sync_to_async(_switch)(pair, "second switch")
        second = await _next_of(socket, "fragment")
        await socket.disconnect()
        return first, second

    _, second = run(scenario)

    assert second["delta"] is None
    assert "data-keep" not in second["html"]


def test_viewers_and_supervisors_each_get_their_own_render_of_the_sessions_page(pair):
    viewer = role_user(roles.VIEWER, username="vera")
    supervisor = role_user(roles.SUPERVISOR, username="sam")
    session = SessionFactory(server=pair.server, caller_name="Ada Lovelace")
    waiting = SessionFactory(server=pair.server, caller_name="Grace Hopper")
    cookies = session_cookie(viewer), session_cookie(supervisor)

    async def scenario() -> list[dict]:
        sockets = [await _opened(SESSIONS, cookie) for cookie in cookies]
        await sync_to_async(session_end)(session_id=session.pk, actor="system:test", reason=EndReason.CALLER_LEFT)
        try:
            return [await _next_of(socket, "fragment", "session.changed") for socket in sockets]
        finally:
            for socket in sockets:
                await socket.disconnect()

    for_viewer, for_supervisor = run(scenario)

    assert for_viewer["type"] == for_supervisor["type"] == "fragment"
    assert "Grace Hopper" in for_viewer["html"]
    assert "Grace Hopper" in for_supervisor["html"]
    end_button = f"/console/sessions/{waiting.pk}/end/"
    assert end_button in for_supervisor["html"]
    assert end_button not in for_viewer["html"]  # never the supervisor's render


def test_a_supervisor_made_viewer_gets_the_viewers_render_from_then_on(pair):
    user = role_user(roles.SUPERVISOR, username="sam")
    waiting = SessionFactory(server=pair.server, caller_name="Grace Hopper")
    ended = SessionFactory(server=pair.server, caller_name="Ada Lovelace")
    cookie = session_cookie(user)

    def demote() -> None:
        # As the Django admin does it: the viewer's group first, then the supervisor's away.
        user.groups.add(Group.objects.get(name=roles.VIEWER.group))
        user.groups.remove(Group.objects.get(name=roles.SUPERVISOR.group))

    async def scenario() -> dict:
        socket = await _opened(SESSIONS, cookie)
        await sync_to_async(demote)()
        # The socket's re-checks (one per change of the user) are answered before the
        # session's event: the user's group messages come first on the same socket.
        await sync_to_async(session_end)(session_id=ended.pk, actor="system:test", reason=EndReason.CALLER_LEFT)
        message = await _next_of(socket, "fragment", "session.changed")
        await socket.disconnect()
        return message

    message = run(scenario)

    assert message["type"] == "fragment"
    assert "Grace Hopper" in message["html"]
    assert f"/console/sessions/{waiting.pk}/end/" not in message["html"]


def test_a_logged_out_browser_gets_the_plain_event_and_no_render(admin_user, pair):
    """The render is the browser's own fetch: with its log-in gone Django answers a redirect,
    which is never pushed; the page gets the event and fetches (then goes to the log-in)."""

    def log_ins_end_then_switch() -> None:
        Session.objects.all().delete()
        _switch(pair, "planned work on mb-1")

    message = _overview_message_after(session_cookie(admin_user), log_ins_end_then_switch)

    assert message["type"] == "link.changed"
    assert "html" not in message


@pytest.mark.parametrize("live_push", [True, False])
def test_a_fragment_is_pushed_only_when_the_node_pushes_and_the_view_shares_its_renders(
    admin_user, pair, settings, live_push
):
    settings.LIVE_PUSH = live_push
    cookie = session_cookie(admin_user)
    # The queue page's fragment is rendered per request: never pushed.
    queue = "/ws/status/?coalesce=1&push=" + quote("/console/queue/?fragment=1")

    async def scenario() -> list[str]:
        sockets = [await _opened(OVERVIEW, cookie), await _opened(queue, cookie)]
        await sync_to_async(_switch)(pair, "planned work on mb-1")
        try:
            return [(await _next_of(socket, "fragment", "link.changed"))["type"] for socket in sockets]
        finally:
            for socket in sockets:
                await socket.disconnect()

    assert run(scenario) == (["fragment", "link.changed"] if live_push else ["link.changed", "link.changed"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/partials/overview/", ("/partials/overview/", "")),
        ("/console/sessions/?fragment=1&state=waiting", ("/console/sessions/", "fragment=1&state=waiting")),
        ("/?fragment=1", ("/", "fragment=1")),  # the overview page itself: its fragment is shared too
        ("/console/queue/?fragment=1", None),  # rendered per request
        ("/no/such/page/", None),
        ("https://evil.example/partials/overview/", None),
        ("//evil.example/partials/overview/", None),
        ("partials/overview/", None),
        ("", None),
        ("/partials/overview/?" + "x" * 2100, None),
    ],
)
def test_only_a_fragment_whose_renders_are_shared_may_be_pushed(value, expected):
    assert pushable_target(value) == expected


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"type": "shown", "version": "12.1733390000000"}, "12.1733390000000"),
        ({"type": "shown", "version": "12"}, None),
        ({"type": "shown", "version": "12.3; drop"}, None),
        ({"type": "shown", "version": 12.3}, None),
        ({"type": "other", "version": "12.3"}, None),
        (["shown", "12.3"], None),
    ],
)
def test_a_page_may_only_name_a_render_version(message, expected):
    assert shown_version(message) == expected


def test_whatever_else_a_pushed_page_sends_is_ignored(admin_user, pair):
    junk = ("not json", json.dumps({"type": "shown", "version": "x" * 300}), "[1, 2]", "{}")

    message = _overview_message_after(
        session_cookie(admin_user), lambda: _switch(pair, "planned work on mb-1"), sends=junk
    )

    assert message["type"] == "fragment"
    assert message["delta"] is None


def test_a_watcher_that_logs_out_gets_the_event_and_the_others_the_render(pair, settings):
    """A log-out anywhere moves common.access_epoch: before the next push every watcher's
    log-in is checked again, and the one logged out is sent the event (its fetch then
    takes its page to the log-in), never the render."""
    from django.test import Client
    from django.urls import reverse

    staying, leaving = role_user(roles.VIEWER, username="vera"), role_user(roles.VIEWER, username="walt")
    cookies = session_cookie(staying), session_cookie(leaving)

    def log_out() -> None:
        client = Client()
        client.cookies[settings.SESSION_COOKIE_NAME] = cookies[1].split("=", 1)[1]
        assert client.post(reverse("logout")).status_code == 200  # "You are logged out"

    async def scenario() -> tuple[list[str], list[str]]:
        sockets = [await _opened(OVERVIEW, cookie) for cookie in cookies]
        await sync_to_async(_switch)(pair, "first switch")
        before = [(await _next_of(socket, "fragment", "link.changed"))["type"] for socket in sockets]
        await sync_to_async(log_out)()
        await sync_to_async(_switch)(pair, "second switch")
        after = [(await _next_of(socket, "fragment", "link.changed"))["type"] for socket in sockets]
        for socket in sockets:
            await socket.disconnect()
        return before, after

    before, after = run(scenario)

    assert before == ["fragment", "fragment"]
    assert after == ["fragment", "link.changed"]


def test_the_process_hears_each_event_once_for_all_its_pushed_sockets(admin_user, pair):
    """Pushed sockets are in no event group themselves: the process's one channel is, and
    tells every view (a delivery per event, not per event and socket). A socket that asks
    no push (a script) is in the group as before. Read off the channel layer's own
    membership (channels_redis' pubsub layer, the one the product uses)."""
    from channels.layers import get_channel_layer

    cookie = session_cookie(admin_user)

    async def scenario() -> tuple[int, list[str]]:
        pushed = [await _opened(OVERVIEW, cookie) for _ in range(3)]
        script = await _opened("/ws/status/", cookie)
        layer = get_channel_layer()
        members = len(layer._get_layer().groups[layer._get_layer()._get_group_channel_name(live.STATUS_GROUP)])
        await sync_to_async(_switch)(pair, "planned work on mb-1")
        types = [(await _next_of(socket, "fragment", "link.changed"))["type"] for socket in [*pushed, script]]
        for socket in [*pushed, script]:
            await socket.disconnect()
        return members, types

    members, types = run(scenario)

    assert members == 2  # the process's channel for the three pushed sockets, and the script's
    assert types == ["fragment", "fragment", "fragment", "link.changed"]
