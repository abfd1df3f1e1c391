"""A status socket opened with an API token closes when the token is revoked or expires.

Revocation: the consumer joins the token's group (``common.live.token_group``) and
``failover.services.api_tokens.token_revoke`` sends ``token.revoked`` there after its
commit: the socket closes at once, on whichever node it is. Expiry: a timer set at
connection closes it at the token's ``expires_at``, with no query per event (the timer
also re-reads the row every ``RECHECK_SECONDS``: a revocation whose broadcast was lost
while Redis was away still closes the socket, within that time).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.db import database_sync_to_async
from django.utils import timezone

from common import live
from failover.models import ApiToken

# The socket's credentials are no longer valid: as for an anonymous socket.
CLOSE_TOKEN_INVALID = 4401
# How often an open token socket re-reads its token: only a fallback for a lost
# revocation broadcast, so rare (one small query per script's socket).
RECHECK_SECONDS = 30.0


def _revoked(token_id: int) -> bool:
    return not ApiToken.objects.filter(pk=token_id, revoked_at__isnull=True).exists()


class TokenSocketMixin:
    """For ``AsyncJsonWebsocketConsumer``s: ``watch_token`` once accepted, ``unwatch_token``
    on disconnect; ``token_revoked`` is the group message's handler."""

    token_id: int | None = None
    _expiry_timer: asyncio.Task[None] | None = None

    async def watch_token(self) -> None:
        token = self.scope.get("api_token")  # type: ignore[attr-defined]
        if token is None:
            return
        self.token_id = token.pk
        await self.channel_layer.group_add(live.token_group(token.pk), self.channel_name)  # type: ignore[attr-defined]
        seconds = (token.expires_at - timezone.now()).total_seconds()
        self._expiry_timer = asyncio.create_task(self._close_at_expiry(seconds), name="token-expiry")

    async def _close_at_expiry(self, seconds: float) -> None:
        """Close at the expiry; meanwhile re-read the row now and then, in case the
        revocation's broadcast was lost (Redis unavailable when it was sent)."""
        deadline = asyncio.get_running_loop().time() + max(0.0, seconds)
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            await asyncio.sleep(min(left, RECHECK_SECONDS))
            if self.token_id is not None and await database_sync_to_async(_revoked)(self.token_id):
                break
        await self._close_for_token()

    async def _close_for_token(self) -> None:
        # Forward no further event between the close and the disconnect (StatusConsumer).
        if hasattr(self, "joined"):
            self.joined = False
        await self.close(code=CLOSE_TOKEN_INVALID)  # type: ignore[attr-defined]

    async def unwatch_token(self) -> None:
        timer, self._expiry_timer = self._expiry_timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        if self.token_id is not None:
            await self.channel_layer.group_discard(live.token_group(self.token_id), self.channel_name)  # type: ignore[attr-defined]
            self.token_id = None

    async def token_revoked(self, message: dict[str, Any]) -> None:
        await self._close_for_token()
