"""Both live sockets (/ws/status/ for staff, /ws/agent/ for agents) refuse foreign origins
and anonymous users, through the real ASGI application.

The basic cases (anonymous, one foreign origin, the wrong kind of user) are in
tests/console/test_status_websocket.py and tests/desktop/test_agent_websocket.py; these are
the ones they leave out: no Origin at all, origins that only look like ours, a stale or
forged session cookie and a deactivated account, on both paths alike.
"""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model

from collabadmin.asgi import application
from console.consumers import CLOSE_NOT_AUTHENTICATED
from tests.websockets import TIMEOUT, open_socket, refused_with, run, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

PATHS = ["/ws/status/", "/ws/agent/"]


@pytest.fixture
def user_for(admin_user, agent):
    """The user each socket is meant for: staff on /ws/status/, an agent on /ws/agent/."""
    return {"/ws/status/": admin_user, "/ws/agent/": agent.user}


def close_code(socket: WebsocketCommunicator) -> int:
    async def scenario() -> int:
        return await refused_with(socket)

    return run(scenario)


def handshake_accepted(socket: WebsocketCommunicator) -> bool:
    async def scenario() -> bool:
        connected, _ = await socket.connect(timeout=TIMEOUT)
        await socket.disconnect()
        return connected

    return run(scenario)


@pytest.mark.parametrize("path", PATHS)
def test_the_right_user_from_our_origin_is_accepted(user_for, path):
    # The control for every refusal below.
    socket = open_socket(path, cookie=session_cookie(user_for[path]))

    async def scenario() -> dict:
        connected, _ = await socket.connect(timeout=TIMEOUT)
        assert connected
        first = await socket.receive_json_from(timeout=TIMEOUT)
        await socket.disconnect()
        return first

    assert run(scenario)["type"] == "snapshot"


@pytest.mark.parametrize("path", PATHS)
def test_a_handshake_without_an_origin_header_is_refused(user_for, path):
    cookie = session_cookie(user_for[path])
    headers = [(b"host", b"localhost"), (b"cookie", cookie.encode())]

    assert not handshake_accepted(WebsocketCommunicator(application, path, headers=headers))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost.evil.example",  # our host name as a prefix
        "http://evil-localhost",
        "null",  # sandboxed frames, file: pages
        "https://127.0.0.2",
    ],
)
def test_origins_that_only_look_like_ours_are_refused(user_for, path, origin):
    socket = open_socket(path, cookie=session_cookie(user_for[path]), origin=origin)

    assert not handshake_accepted(socket)


@pytest.mark.parametrize("path", PATHS)
def test_an_anonymous_socket_from_a_foreign_origin_is_refused_at_the_handshake(path):
    assert not handshake_accepted(open_socket(path, origin="https://evil.example"))


@pytest.mark.parametrize("path", PATHS)
def test_a_forged_session_cookie_is_anonymous(path):
    socket = open_socket(path, cookie=f"{settings.SESSION_COOKIE_NAME}=forged{'x' * 26}")

    assert close_code(socket) == CLOSE_NOT_AUTHENTICATED


@pytest.mark.parametrize("path", PATHS)
def test_the_cookie_of_a_logged_out_session_is_anonymous(user_for, path):
    from django.contrib.sessions.models import Session

    cookie = session_cookie(user_for[path])
    Session.objects.all().delete()  # what logging out (or expiry) does to the server side

    assert close_code(open_socket(path, cookie=cookie)) == CLOSE_NOT_AUTHENTICATED


@pytest.mark.parametrize("path", PATHS)
def test_a_deactivated_account_is_anonymous(user_for, path):
    user = user_for[path]
    cookie = session_cookie(user)
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)

    assert close_code(open_socket(path, cookie=cookie)) == CLOSE_NOT_AUTHENTICATED
