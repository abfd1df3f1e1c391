"""WebSocket test helpers: sockets to the real ASGI application, as a logged-in browser."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from collabadmin.asgi import application

ORIGIN = "http://localhost"
TIMEOUT = 5


def session_cookie(user) -> str:
    """The Cookie header of a logged-in browser (made outside the async scenario: it writes the session)."""
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def open_socket(path: str, *, cookie: str | None = None, origin: str = ORIGIN) -> WebsocketCommunicator:
    """A socket to ``path`` from ``origin``, logged in when ``cookie`` (see session_cookie) is given."""
    headers = [(b"origin", origin.encode()), (b"host", b"localhost")]
    if cookie is not None:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, path, headers=headers)


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    """Run an async scenario from a synchronous (database-enabled) test."""
    return async_to_sync(scenario)()


async def refused_with(socket: WebsocketCommunicator) -> int:
    """The close code of a socket the consumer accepted only to close it."""
    connected, _ = await socket.connect(timeout=TIMEOUT)
    assert connected
    closing = await socket.receive_output(timeout=TIMEOUT)
    assert closing["type"] == "websocket.close"
    return closing["code"]
