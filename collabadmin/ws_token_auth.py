"""WebSockets authenticated by ``Authorization: Token <key>``, for scripts watching ``/ws/status/``.

A browser cannot set that header on a WebSocket, so a socket that carries it comes from
a program holding the key, not from a page another site made a browser open: it skips the
session cookie and the origin check (which exist against exactly that), and programs
need not fake an ``Origin``. Every other socket goes through the session stack as before.

The same rules as the API (``collabadmin.token_auth``): unknown, revoked or expired keys
and inactive users leave the socket anonymous, which the consumer refuses (4401). The
token rides in ``scope["api_token"]``: the consumer joins the token's group (closed at
once on revocation) and closes the socket when the token expires.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser
from rest_framework.exceptions import AuthenticationFailed

from collabadmin.token_auth import record_use, token_for_key
from common.client_address import address_behind_proxies
from failover.models import ApiToken

SCHEME = b"token"


def header(scope: dict[str, Any], wanted: bytes) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == wanted:
            return value
    return None


def header_key(scope: dict[str, Any]) -> str | None:
    """The key of an ``Authorization: Token <key>`` header, else None."""
    parts = (header(scope, b"authorization") or b"").split()
    if len(parts) == 2 and parts[0].lower() == SCHEME:
        return parts[1].decode("latin-1")
    return None


def client_address(scope: dict[str, Any]) -> str | None:
    """The client's address as the API sees it (through ``TRUSTED_PROXY_COUNT`` proxies)."""
    peer = (scope.get("client") or (None,))[0]
    return address_behind_proxies(peer, (header(scope, b"x-forwarded-for") or b"").decode("latin-1"))


def _authenticate(key: str, address: str | None) -> ApiToken | None:
    try:
        token = token_for_key(key)
    except AuthenticationFailed:
        return None
    record_use(token, address)
    return token


class TokenAuthMiddleware:
    """``Token`` header: authenticate by it and go to ``token_app``; else ``session_app``."""

    def __init__(self, session_app: Any, token_app: Any) -> None:
        self.session_app, self.token_app = session_app, token_app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        key = header_key(scope) if scope.get("type") == "websocket" else None
        if key is None:
            return await self.session_app(scope, receive, send)
        token = await database_sync_to_async(_authenticate)(key, client_address(scope))
        user = token.user if token is not None else AnonymousUser()
        return await self.token_app(dict(scope, user=user, api_token=token), receive, send)
