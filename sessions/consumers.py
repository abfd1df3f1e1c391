"""The Agent desktop's WebSocket, ``/ws/agent/``: one agent's own sessions and state, live.

The consumer only authenticates, joins its agent's group and forwards; it never writes.
Group names and event payloads belong to ``common.live``; foreign origins were
refused before this runs (``AllowedHostsOriginValidator`` in ``collabadmin.asgi``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.db.models import QuerySet

from common import live
from common.heartbeat import HeartbeatMixin
from sessions.list_push import PUSH_PARAM, SESSIONS, sessions_list_html
from sessions.models import Agent
from sessions.payloads import agent_payload, session_payload
from sessions.views.access import own_open_sessions

# Close codes in the 4000-4999 range (free for applications), modelled on HTTP's, so the
# page can tell "log in again" from "not allowed" from a network failure.
CLOSE_NOT_AUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


def _enabled_agents(user_id: int) -> QuerySet[Agent]:
    """The user's agent while it may use the desktop: enabled, its user active (one rule
    for the connection and for every event it forwards)."""
    return Agent.objects.filter(user_id=user_id, enabled=True, user__is_active=True)


def _enabled_agent_id(user_id: int) -> int | None:
    return _enabled_agents(user_id).values_list("pk", flat=True).first()


def _checked_event(user_id: int, agent_id: int, cookies: dict[str, str] | None) -> tuple[bool, str | None]:
    """(the user is still that enabled agent, the sessions list to push with the event or
    None): the check every forwarded event makes and, given the socket's ``cookies``, the
    list's render, in one thread hop. Without cookies (no list wanted) the check reads no row."""
    still = _enabled_agents(user_id).filter(pk=agent_id)
    if cookies is None:
        return still.exists(), None
    agent = still.first()
    if agent is None:
        return False, None
    return True, sessions_list_html(agent, cookies)


def wants_sessions_pushed(query_string: bytes) -> bool:
    """``?push=sessions``: the desktop's list comes with each ``session.changed``."""
    return SESSIONS in parse_qs(query_string.decode("latin-1")).get(PUSH_PARAM, [])


def _snapshot(agent_id: int) -> dict[str, Any]:
    # The sequence number is read before the rows: an event numbered up to it was sent
    # after its commit, so the rows read next include its change and the client may drop
    # it; anything numbered later is delivered (we joined the group first) and applied.
    seq = live.current_sequence()
    agent = Agent.objects.select_related("user").get(pk=agent_id)
    sessions = [session_payload(session) for session in own_open_sessions(agent_id)]
    return {
        "type": "snapshot",
        "seq": seq,
        "redis": live.redis_run_id(),
        "data": {"agent": agent_payload(agent), "sessions": sessions},
    }


class AgentConsumer(HeartbeatMixin, AsyncJsonWebsocketConsumer):
    """Sends a snapshot first, then every ``{type, seq, data}`` event of the agent's group.

    Refuses (accepts, then closes, so the browser sees the code) anonymous users with
    4401 and users who are not an enabled agent with 4403. Each forwarded event re-checks
    that the agent is still enabled: a disabled agent's desktop stops hearing at once.
    With ``?push=sessions`` each ``session.changed`` also carries the agent's sessions list
    as the desktop shows it (``html.sessions``: sessions/list_push.py).

    The checks and renders run on the loop's thread pool, not on the one thread that every
    consumer's database work otherwise shares: with a thousand desktops, an event for one
    agent need not queue behind the others'.
    """

    agent_id: int | None = None
    group: str | None = None
    push_sessions = False

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self._refuse(CLOSE_NOT_AUTHENTICATED)
            return
        self.user_id = user.pk
        agent_id = await database_sync_to_async(_enabled_agent_id)(user.pk)
        if agent_id is None:
            await self._refuse(CLOSE_FORBIDDEN)
            return
        self.agent_id = agent_id
        self.push_sessions = wants_sessions_pushed(self.scope.get("query_string", b""))
        # Subscribe first, then take the snapshot: nothing can fall between the two.
        self.group = live.agent_group(agent_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json(await database_sync_to_async(_snapshot)(agent_id))
        self.start_heartbeat()

    async def _refuse(self, code: int) -> None:
        await self.accept()
        await self.close(code=code)

    async def disconnect(self, code: int) -> None:
        await self.stop_heartbeat()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The desktop sends nothing; anything received (even malformed JSON) is ignored."""

    async def live_event(self, message: dict[str, Any]) -> None:
        """Forward one event of ``common.live`` to the browser, as it was published."""
        if self.agent_id is None:
            return
        event = message["event"]
        push = self.push_sessions and event.get("type") == "session.changed"
        cookies = self.scope.get("cookies", {}) if push else None
        check = database_sync_to_async(_checked_event, thread_sensitive=False)
        allowed, html = await check(self.user_id, self.agent_id, cookies)
        if not allowed:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.send_json(event if html is None else {**event, "html": {SESSIONS: html}})
