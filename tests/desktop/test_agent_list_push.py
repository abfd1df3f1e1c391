"""The Agent desktop's sessions list pushed with each session change (``/ws/agent/?push=sessions``):
the same list the desktop would fetch, for the same browser (its zone, a CSRF token its
End buttons can post with), only the agent's own, and nothing for sockets that did not ask.

Real ASGI application, real Redis channel layer, real database commits (transactional).
"""

from __future__ import annotations

import re
from functools import partial

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import Client
from django.urls import reverse

from failover.choices import PeerKind
from sessions.choices import AgentState, EndReason, SessionState
from sessions.consumers import CLOSE_FORBIDDEN
from sessions.models import Agent, CollaborationSession
from sessions.services.lifecycle import agent_set_ready, session_end
from sessions.services.routes import session_phone_hung_up
from tests.desktop.conftest import logged_in, routed_session
from tests.factories import PeerFactory
from tests.websockets import TIMEOUT, open_socket, run

pytestmark = pytest.mark.django_db(transaction=True)

PUSHED = "/ws/agent/?push=sessions"
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
ZONE = "Asia/Kolkata"  # IST: not the installation's TIME_ZONE, so a list in it shows


def browser(user, *, zone: str = ZONE, csrf: bool = True) -> tuple[Client, str]:
    """A logged-in browser that opened the desktop (which set its CSRF cookie), and its Cookie header."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.cookies["tz"] = zone
    assert client.get(reverse("agent:desktop")).status_code == 200
    if not csrf:
        del client.cookies[settings.CSRF_COOKIE_NAME]
    return client, "; ".join(f"{name}={morsel.value}" for name, morsel in client.cookies.items())


def hang_up(session: CollaborationSession) -> None:
    """The caller hangs up, as the Media Blender reports it (a session.changed for its agent)."""
    peer = PeerFactory(server=session.server, kind=PeerKind.MEDIA_BLENDER)
    assert session_phone_hung_up(session_id=session.pk, peer_id=peer.pk, agent_icm_id=session.agent.icm_id)


def first_event_after(path: str, cookie: str, change, *args) -> dict:
    """The first event after the snapshot on a socket to ``path``, ``change(*args)`` having been made."""

    async def scenario() -> dict:
        socket = open_socket(path, cookie=cookie)
        assert (await socket.connect(timeout=TIMEOUT))[0]
        assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
        await sync_to_async(change)(*args)
        event = await socket.receive_json_from(timeout=TIMEOUT)
        await socket.disconnect()
        return event

    return run(scenario)


def without_tokens(html: str) -> str:
    # A CSRF token is masked afresh at each render: equal secrets, different text.
    return CSRF_INPUT.sub('name="csrfmiddlewaretoken" value=""', html)


def test_the_pushed_list_is_the_list_the_desktop_would_fetch_in_the_browsers_zone(agent, other_agent):
    hanging = routed_session(logged_in(agent), caller_name="Ada Lovelace")
    routed_session(agent, caller_name="Alan Turing")
    routed_session(logged_in(other_agent), caller_name="Grace Hopper")
    client, cookie = browser(agent.user)

    event = first_event_after(PUSHED, cookie, hang_up, hanging)

    assert (event["type"], event["data"]["id"], event["data"]["phone_leg"]) == (
        "session.changed",
        str(hanging.pk),
        "hung_up",
    )
    pushed = event["html"]["sessions"]
    assert "Caller hung up at" in pushed
    assert " IST" in pushed
    assert "Alan Turing" in pushed
    assert "Grace Hopper" not in pushed
    fetched = client.get(reverse("agent:sessions-partial")).content.decode()
    assert without_tokens(pushed) == without_tokens(fetched)


def test_the_pushed_end_button_posts_with_a_token_the_server_accepts(agent):
    hanging = routed_session(logged_in(agent), caller_name="Ada Lovelace")
    client, cookie = browser(agent.user)
    event = first_event_after(PUSHED, cookie, hang_up, hanging)
    token = CSRF_INPUT.search(event["html"]["sessions"]).group(1)
    end = reverse("agent:session-end", args=[hanging.pk])

    forged = client.post(end, {"csrfmiddlewaretoken": "x" * 64})
    assert forged.status_code == 403  # the check is on: only a real token passes
    answer = client.post(end, {"csrfmiddlewaretoken": token})

    assert answer.status_code == 302
    hanging.refresh_from_db()
    assert (hanging.state, hanging.end_reason) == (SessionState.ENDED, EndReason.AGENT_ENDED)


def test_a_socket_that_did_not_ask_gets_the_event_alone(agent):
    own = routed_session(logged_in(agent))
    _, cookie = browser(agent.user)

    end = partial(session_end, session_id=own.pk, actor=agent.user, reason=EndReason.AGENT_ENDED)
    event = first_event_after("/ws/agent/", cookie, end)

    assert event["type"] == "session.changed"
    assert "html" not in event


def test_without_a_csrf_cookie_nothing_is_pushed_and_the_desktop_fetches(agent):
    own = routed_session(logged_in(agent))
    _, cookie = browser(agent.user, csrf=False)

    event = first_event_after(PUSHED, cookie, hang_up, own)

    assert event["type"] == "session.changed"
    assert "html" not in event


def test_an_agent_event_is_forwarded_without_a_list(agent):
    logged_in(agent)
    _, cookie = browser(agent.user)
    go_ready = partial(agent_set_ready, agent_id=agent.pk, ready=True, actor=agent.user)

    event = first_event_after(PUSHED, cookie, go_ready)

    assert event["type"] == "agent.changed"
    assert "html" not in event


def test_an_agent_disabled_while_connected_gets_no_list_and_is_closed(agent):
    own = routed_session(logged_in(agent), caller_name="Ada Lovelace")
    _, cookie = browser(agent.user)

    async def scenario() -> dict:
        socket = open_socket(PUSHED, cookie=cookie)
        assert (await socket.connect(timeout=TIMEOUT))[0]
        await socket.receive_json_from(timeout=TIMEOUT)
        await sync_to_async(Agent.objects.filter(pk=agent.pk).update)(state=AgentState.LOGGED_OUT, enabled=False)
        await sync_to_async(session_end)(session_id=own.pk, actor="system:test", reason=EndReason.ADMIN_ENDED)
        return await socket.receive_output(timeout=TIMEOUT)

    assert run(scenario) == {"type": "websocket.close", "code": CLOSE_FORBIDDEN}
