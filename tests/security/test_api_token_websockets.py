"""API tokens on the status WebSocket (issue 22, point 2): a script opens ``/ws/status/`` with
``Authorization: Token``; a revoked or expired token is refused, and a socket already open
closes the moment its token is revoked (over the real Redis channel layer) or expires.
Through the real ASGI application."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from collabadmin.asgi import application
from common import live
from console import token_sockets
from console.token_sockets import CLOSE_TOKEN_INVALID
from failover.models import ApiToken
from failover.services.api_tokens import token_revoke
from tests.factories import StaffFactory, api_key
from tests.websockets import TIMEOUT, refused_with, run

pytestmark = pytest.mark.django_db(transaction=True)


def token_socket(key: str, path: str = "/ws/status/", *, origin: str | None = None) -> WebsocketCommunicator:
    """A script's socket: the token header, no cookie, and (scripts send none) no Origin."""
    headers = [(b"host", b"localhost"), (b"authorization", f"Token {key}".encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    socket = WebsocketCommunicator(application, path, headers=headers)
    socket.scope["client"] = ["192.0.2.80", 50000]
    return socket


@pytest.fixture
def owner():
    # Staff too: the status socket's role check is being moved from is_staff to view_desktop.
    return StaffFactory(username="script-owner")


async def opened(socket: WebsocketCommunicator) -> dict:
    connected, _ = await socket.connect(timeout=TIMEOUT)
    assert connected
    return await socket.receive_json_from(timeout=TIMEOUT)


async def close_code_of_open(socket: WebsocketCommunicator) -> int:
    """Wait for the server to close an open socket (events before it are skipped)."""
    while True:
        message = await socket.receive_output(timeout=TIMEOUT)
        if message["type"] == "websocket.close":
            return message["code"]


def test_a_script_opens_the_status_socket_with_its_token_and_its_use_is_recorded(owner):
    socket = token_socket(api_key(owner))

    async def scenario() -> dict:
        first = await opened(socket)
        await socket.disconnect()
        return first

    assert run(scenario)["type"] == "snapshot"
    token = ApiToken.objects.get()
    assert token.last_used_from == "192.0.2.80"
    assert token.last_used_at is not None


@pytest.mark.parametrize("state", ["unknown", "revoked", "expired"])
def test_a_socket_with_an_unknown_revoked_or_expired_token_is_refused(owner, state):
    key = api_key(owner) if state != "unknown" else "ca_" + "y" * 40
    if state == "revoked":
        token_revoke(token_id=ApiToken.objects.get().pk, actor=owner, reason="test")
    if state == "expired":
        ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    async def scenario() -> int:
        return await refused_with(token_socket(key))

    assert run(scenario) == CLOSE_TOKEN_INVALID


def test_an_open_socket_closes_at_once_when_its_token_is_revoked(owner):
    key = api_key(owner)
    other_key = api_key(owner)
    token = ApiToken.objects.order_by("pk").first()
    revoke = sync_to_async(token_revoke)

    async def scenario() -> tuple[int, dict]:
        socket, other = token_socket(key), token_socket(other_key)
        await opened(socket)
        await opened(other)
        await revoke(token_id=token.pk, actor=owner, reason="leaked")
        code = await close_code_of_open(socket)
        # The other token's socket stays open and keeps hearing events.
        await sync_to_async(live.send_now)("test.event", {}, [live.STATUS_GROUP])
        event = await other.receive_json_from(timeout=TIMEOUT)
        await other.disconnect()
        return code, event

    code, event = run(scenario)
    assert code == CLOSE_TOKEN_INVALID
    assert event["type"] == "test.event"


def test_an_open_socket_closes_when_its_token_expires(owner):
    key = api_key(owner)
    ApiToken.objects.update(expires_at=timezone.now() + timedelta(seconds=1))

    async def scenario() -> int:
        socket = token_socket(key)
        await opened(socket)
        return await close_code_of_open(socket)

    assert run(scenario) == CLOSE_TOKEN_INVALID


def test_a_token_opens_only_the_status_socket(owner):
    key = api_key(owner)

    async def scenario() -> bool:
        socket = token_socket(key, "/ws/agent/")
        try:
            connected, _ = await socket.connect(timeout=TIMEOUT)
        except ValueError:  # no route for a token socket there
            return False
        return connected

    assert run(scenario) is False


def test_a_revocation_whose_broadcast_was_lost_still_closes_the_socket_at_the_next_recheck(owner, monkeypatch):
    monkeypatch.setattr(token_sockets, "RECHECK_SECONDS", 0.2)
    key = api_key(owner)
    # Revoked in the database without the broadcast (as when Redis was away at the time).
    mark_revoked = sync_to_async(lambda: ApiToken.objects.update(revoked_at=timezone.now()))

    async def scenario() -> int:
        socket = token_socket(key)
        await opened(socket)
        await mark_revoked()
        return await close_code_of_open(socket)

    assert run(scenario) == CLOSE_TOKEN_INVALID


def test_behind_the_balancer_the_last_use_is_the_address_the_balancer_saw(owner, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    socket = token_socket(api_key(owner))
    socket.scope["headers"].append((b"x-forwarded-for", b"1.1.1.1, 198.51.100.7"))

    async def scenario() -> None:
        await opened(socket)
        await socket.disconnect()

    run(scenario)
    assert ApiToken.objects.get().last_used_from == "198.51.100.7"
