"""The Administration desktop's WebSocket, ``/ws/status/``: the whole installation, live.

The consumer only authenticates, joins the status group and forwards; it never writes.
Group names and event payloads belong to ``common.live``; foreign origins were
refused before this runs (``AllowedHostsOriginValidator`` in ``collabadmin.asgi``).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.auth import get_user_model

from common import live
from common.batched_checks import BatchedCheck
from common.coalesce import CoalescingMixin
from common.heartbeat import HeartbeatMixin
from common.permissions import may, users_who_may
from common.roles import VIEW_DESKTOP
from console import pushed_fragments
from console.pushed_fragments import Watcher, pushed_views
from console.selectors import status_snapshot
from console.token_sockets import TokenSocketMixin

# The same close codes as the Agent desktop's socket (4000-4999, modelled on HTTP's).
CLOSE_NOT_AUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


def _may_view(user_id: int) -> bool:
    """The user (read afresh: roles change while a socket is open) holds view_desktop."""
    user = get_user_model().objects.filter(pk=user_id).first()
    return may(user, VIEW_DESKTOP)


def _push_key(user_id: int, target: tuple[str, str], cookies: dict[str, str]) -> pushed_fragments.Key:
    """The key of the render this user's fetch of ``target`` gets (read afresh)."""
    user = get_user_model().objects.filter(pk=user_id).first()
    return pushed_fragments.view_key(target, user, cookies)


# The re-checks of the open sockets (each heartbeat, each change of a user): those of one
# quarter of a second in one query (common/batched_checks.py).
still_may_view = BatchedCheck(lambda user_ids: users_who_may(VIEW_DESKTOP, user_ids))


def socket_options(query_string: bytes) -> tuple[frozenset[str], bool]:
    """(the event types the page asked not to hear, whether it asked for coalescing).

    ``?ignore=session.changed,agent.changed`` (commas or spaces): the page shows nothing
    they change (the overview shows no session). ``?coalesce=1``: the newest event of each
    window only (common/coalesce.py)."""
    options = parse_qs(query_string.decode("latin-1"))
    ignored = frozenset(part for value in options.get("ignore", []) for part in value.replace(",", " ").split())
    return ignored, options.get("coalesce", [""])[-1] == "1"


def _snapshot() -> dict[str, Any]:
    # The sequence number is read before the rows: an event numbered up to it was sent
    # after its commit, so the rows read next include its change and the client may drop
    # it; anything numbered later is delivered (we joined the group first) and applied.
    seq = live.current_sequence()
    return {"type": "snapshot", "seq": seq, "redis": live.redis_run_id(), "data": status_snapshot()}


class StatusConsumer(TokenSocketMixin, CoalescingMixin, HeartbeatMixin, AsyncJsonWebsocketConsumer):
    """Sends the status snapshot first, then every ``{type, seq, data}`` event of the status group.

    A page that shows nothing of some events names them (``?ignore=``): they are not sent,
    and the socket does not even join the group of a topic whose every type it ignores
    (``common.live.TOPIC_GROUPS``), so a session change costs the overview's sockets nothing.
    Without the parameter a socket hears every event (scripts). A page that only refreshes
    from the server on an event asks ``?coalesce=1``: at most one event per 200 ms, the
    newest (common/coalesce.py).

    A page whose fragment is rendered once for all its watchers (``?push=<the fragment's
    URL>``) gets that render instead of the event, sent once per window for every socket
    of the process that shows the same view (console/pushed_fragments.py; such a socket
    joins no event group: the process hears them once for all its pushed sockets); it tells which
    render it shows after each fetch (``{"type": "shown", "version": ...}``), the only
    message the socket reads.

    Refuses (accepts, then closes, so the browser sees the code) anonymous users with 4401
    and users without view_desktop with 4403 (it carries no actions: the desktop sends
    nothing, every action is a POST that checks its own permission). A user whose role is
    taken away or who is deactivated has its
    sockets close at once when the user is saved (``access.check`` on the user's group,
    ``failover.access_changes``) and within a heartbeat otherwise (a re-check every few seconds),
    so forwarding an event costs no database query: with hundreds of desktops open, a
    query per event and socket was most of the web process's time. The re-checks of all the
    sockets of the process within a quarter of a second are one query (``still_may_view``).
    """

    user_id: int | None = None
    joined = False
    ignored: frozenset[str] = frozenset()
    groups: tuple[str, ...] = ()
    watcher: Watcher | None = None
    push_target: tuple[str, str] | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self._refuse(CLOSE_NOT_AUTHENTICATED)
            return
        if not await database_sync_to_async(_may_view)(user.pk):
            await self._refuse(CLOSE_FORBIDDEN)
            return
        self.user_id = user.pk
        await self.channel_layer.group_add(live.user_group(user.pk), self.channel_name)
        # Subscribe first, then take the snapshot: nothing can fall between the two.
        self.ignored, self.coalescing = socket_options(self.scope.get("query_string", b""))
        groups = live.status_socket_groups(self.ignored)
        self.push_target = pushed_fragments.pushable_target(
            pushed_fragments.push_query(self.scope.get("query_string", b""))
        )
        if self.push_target is not None:
            # A pushed page: the process hears the groups' events once for all its pages.
            key = await database_sync_to_async(_push_key)(user.pk, self.push_target, self.scope.get("cookies", {}))
            environ = pushed_fragments.handshake_environ(self.scope, self.push_target)
            session_key = getattr(self.scope.get("session"), "session_key", None) or ""
            self.watcher = Watcher(
                key, environ, self._send_bytes, self.send_event, session_key, user.pk, ignored=self.ignored
            )
            await pushed_views.join(self.watcher, groups)
        else:
            self.groups = tuple(groups)
            for group in self.groups:
                await self.channel_layer.group_add(group, self.channel_name)
        self.joined = True
        await self.accept()
        # Opened with an API token: closed when it is revoked or expires.
        await self.watch_token()
        await self.send_json(await database_sync_to_async(_snapshot)())
        self.start_heartbeat()

    async def _refuse(self, code: int) -> None:
        await self.accept()
        await self.close(code=code)

    async def _send_bytes(self, data: bytes) -> None:
        await self.send(bytes_data=data)

    async def disconnect(self, code: int) -> None:
        self.stop_coalescing()
        await self.stop_heartbeat()
        await self.unwatch_token()
        if self.user_id is not None:
            await self.channel_layer.group_discard(live.user_group(self.user_id), self.channel_name)
        if self.joined:
            await self._leave()

    async def _leave(self) -> None:
        self.joined = False
        if self.watcher is not None:
            pushed_views.leave(self.watcher)
            self.watcher = None
        for group in self.groups:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """A pushed page's ``shown``; anything else (even malformed JSON) is ignored."""
        if self.watcher is None or not text_data or len(text_data) > 200:
            return
        try:
            version = pushed_fragments.shown_version(json.loads(text_data))
        except ValueError:
            return
        if version is not None:
            self.watcher.shown = version

    async def live_event(self, message: dict[str, Any]) -> None:
        """Forward one event of ``common.live`` to the browser, as it was published (a
        pushed page's socket is in no event group: the process hears for it)."""
        if self.joined and message["event"]["type"] not in self.ignored:
            await self.send_event(message["event"])

    async def access_check(self, message: dict[str, Any]) -> None:
        """The user changed: close at once unless it still holds view_desktop; a pushed
        page's render key follows the user's new access class."""
        if await self.still_allowed() and self.watcher is not None and self.push_target is not None:
            cookies = self.scope.get("cookies", {})
            key = await database_sync_to_async(_push_key)(self.user_id, self.push_target, cookies)
            if self.watcher is not None:
                pushed_views.move(self.watcher, key)

    async def still_allowed(self) -> bool:
        if self.user_id is None or not self.joined:
            return False
        if await still_may_view(self.user_id):
            return True
        await self._leave()
        await self.close(code=CLOSE_FORBIDDEN)
        return False
