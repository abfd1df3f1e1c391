"""An agent reaches only its own sessions: randomized over HTTP and over the WebSocket.

Hypothesis builds a random installation (agents on one or two servers, in any state, and
sessions in every state, each owned by some agent or by nobody yet), picks one of the agents
and then asks, as that agent, for every session of the installation plus ids that do not
exist: on the Agent desktop (session page and fragment, the end form), through the REST API
(detail, end, the lists and their filters) and on ``/ws/agent/`` (snapshot and live events).

Another agent's session must be indistinguishable from one that does not exist: a 404 that
carries nothing of it, and a refused end leaves it exactly as it was. Every caller's name is
unique, so "nothing of it" is checked by looking for that name in every response.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collabadmin.celery import app as celery_app
from sessions.choices import AgentState, EndReason, PhoneLeg, SessionState
from sessions.endings import RECENTLY_ENDED_FOR, RECENTLY_ENDED_SHOWN
from sessions.models import Agent, CollaborationSession
from sessions.services.lifecycle import publish_agent, session_end
from tests.factories import AgentFactory, ServerFactory, SessionFactory, api_key
from tests.websockets import TIMEOUT, open_socket, run, session_cookie

OPEN_STATES = (SessionState.QUEUED, SessionState.IN_TRANSIT, SessionState.ACTIVE)

# --- A random installation -----------------------------------------------------------------

agent_specs = st.fixed_dictionaries(
    {"server": st.integers(0, 1), "state": st.sampled_from([s.value for s in AgentState])}
)
session_specs = st.fixed_dictionaries(
    {
        # An owner index (modulo the number of agents), or nobody: a queued session, or one that
        # ended before it was routed.
        "owner": st.none() | st.integers(0, 5),
        "state": st.sampled_from([s.value for s in SessionState]),
    }
)
worlds = st.fixed_dictionaries(
    {
        "agents": st.lists(agent_specs, min_size=2, max_size=4),
        "sessions": st.lists(session_specs, min_size=1, max_size=8),
        "actor": st.integers(0, 3),
        "strangers": st.lists(st.uuids(), max_size=2),
    }
)


@dataclass
class World:
    actor: Agent
    agents: list[Agent]
    sessions: list[CollaborationSession]
    strangers: list[uuid.UUID]

    @property
    def own(self) -> list[CollaborationSession]:
        return [s for s in self.sessions if s.agent_id == self.actor.pk]

    @property
    def foreign(self) -> list[CollaborationSession]:
        return [s for s in self.sessions if s.agent_id != self.actor.pk]


def build(spec: dict[str, Any]) -> World:
    """The installation ``spec`` describes, written directly (set-up only) within the constraints."""
    now = timezone.now()
    tag = uuid.uuid4().hex[:8]  # unique names even when the examples' rows are not rolled back
    servers = [ServerFactory(name=f"iso-{tag}-a"), ServerFactory(name=f"iso-{tag}-b")]
    agents = []
    for index, agent_spec in enumerate(spec["agents"]):
        state = agent_spec["state"]
        agents.append(
            AgentFactory(
                user__username=f"iso-{tag}-{index}",
                server=servers[agent_spec["server"]],
                state=state,
                logged_in_at=None if state == AgentState.LOGGED_OUT else now,
                max_sessions=8,
            )
        )
    sessions = []
    for index, session_spec in enumerate(spec["sessions"]):
        state = session_spec["state"]
        owner = None if session_spec["owner"] is None else agents[session_spec["owner"] % len(agents)]
        if state in (SessionState.IN_TRANSIT, SessionState.ACTIVE) and owner is None:
            owner = agents[index % len(agents)]  # a routed session always has its agent
        if state == SessionState.QUEUED:
            owner = None
        fields: dict[str, Any] = {
            "server": owner.server if owner else servers[0],
            "state": state,
            "agent": owner,
            "caller_name": f"Caller {tag} {index}",
            "topic": f"Topic {tag} {index}",
            "queued_at": now,
        }
        if owner is not None:
            fields.update(routed_at=now, route_epoch=1, phone_leg=PhoneLeg.CONNECTED)
        if state in (SessionState.ACTIVE, SessionState.ENDED) and owner is not None:
            fields["activated_at"] = now
        if state == SessionState.ENDED:
            fields.update(ended_at=now, end_reason=EndReason.CALLER_LEFT)
        sessions.append(SessionFactory(**fields))
    actor = agents[spec["actor"] % len(agents)]
    return World(actor=actor, agents=agents, sessions=sessions, strangers=spec["strangers"])


def snapshot_of(session: CollaborationSession) -> tuple:
    session = CollaborationSession.objects.get(pk=session.pk)
    return (session.state, session.agent_id, session.ended_at, session.end_reason, session.ended_by_id)


class _Rollback(Exception):
    pass


def each_example_rolled_back(check) -> None:
    """Run ``check`` in a savepoint that is rolled back: every example starts from an empty
    database, inside the test's own transaction."""
    try:
        with transaction.atomic():
            check()
            raise _Rollback
    except _Rollback:
        pass


# --- Over HTTP: the Agent desktop and the REST API ---------------------------------------------

HTTP_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _assert_reveals_nothing(response, session: CollaborationSession) -> None:
    assert response.status_code == 404, (response.status_code, response.request["PATH_INFO"])
    body = response.content.decode()
    assert session.caller_name not in body
    assert session.topic not in body


def check_http(world: World) -> None:
    desktop = Client()
    desktop.force_login(world.actor.user)
    api = Client(headers={"Authorization": f"Token {api_key(world.actor.user)}"})
    own_ids = {str(s.pk) for s in world.own}

    # Every session of the installation, one by one, and ids that name nothing.
    for session in world.sessions:
        page = desktop.get(f"/agent/sessions/{session.pk}/")
        fragment = desktop.get(f"/agent/partials/sessions/{session.pk}/")
        detail = api.get(f"/api/v1/sessions/{session.pk}/")
        if str(session.pk) in own_ids:
            assert page.status_code == fragment.status_code == detail.status_code == 200
            assert session.caller_name in page.content.decode()
            assert detail.json()["id"] == str(session.pk)
        else:
            for response in (page, fragment, detail):
                _assert_reveals_nothing(response, session)
            assert detail.json() == {"detail": "No CollaborationSession matches the given query."}
    for stranger in world.strangers:
        assert desktop.get(f"/agent/sessions/{stranger}/").status_code == 404
        assert desktop.get(f"/agent/partials/sessions/{stranger}/").status_code == 404
        assert api.get(f"/api/v1/sessions/{stranger}/").status_code == 404

    # The lists: exactly the agent's own sessions (open ones on the desktop), whatever the filter.
    listed = api.get("/api/v1/sessions/", {"limit": 1000}).json()
    assert {row["id"] for row in listed["results"]} == own_ids
    for other in world.agents:
        filtered = api.get("/api/v1/sessions/", {"agent": other.pk, "limit": 1000}).json()["results"]
        assert {row["id"] for row in filtered} == (own_ids if other == world.actor else set())
    agents = api.get("/api/v1/agents/").json()["results"]
    assert [row["id"] for row in agents] == [world.actor.pk]
    for other in world.agents:
        if other != world.actor:
            assert api.get(f"/api/v1/agents/{other.pk}/").status_code == 404
    # The desktop lists the agent's open sessions and, under "Recently ended", its own
    # sessions ended in the last half hour (a few, newest first); never another agent's.
    open_own = [s for s in world.own if s.state in OPEN_STATES]
    since = timezone.now() - RECENTLY_ENDED_FOR
    ended_own = sorted(
        (s for s in world.own if s.state == SessionState.ENDED and s.ended_at and s.ended_at >= since),
        key=lambda s: (s.ended_at, s.pk),
        reverse=True,
    )[:RECENTLY_ENDED_SHOWN]
    for page_url in ("/agent/", "/agent/partials/sessions/"):
        page = desktop.get(page_url).content.decode()
        for session in world.sessions:
            shown = session in open_own or session in ended_own
            assert (session.caller_name in page) == shown, (page_url, session.caller_name)

    # Ending: another agent's session (or none) is a 404 and stays exactly as it was.
    for session in world.foreign:
        before = snapshot_of(session)
        _assert_reveals_nothing(api.post(f"/api/v1/sessions/{session.pk}/end/", {"reason": "mine now"}), session)
        _assert_reveals_nothing(desktop.post(f"/agent/sessions/{session.pk}/end/"), session)
        assert snapshot_of(session) == before
    for stranger in world.strangers:
        assert api.post(f"/api/v1/sessions/{stranger}/end/").status_code == 404
        assert desktop.post(f"/agent/sessions/{stranger}/end/").status_code == 404
    # ... and its own can be ended (once: an ended one is a 409 on the API).
    for session in world.own:
        response = api.post(f"/api/v1/sessions/{session.pk}/end/")
        if session.state == SessionState.ENDED:
            assert response.status_code == 409
        else:
            assert response.status_code == 200
            assert response.json()["end_reason"] == EndReason.AGENT_ENDED


@pytest.mark.django_db
@HTTP_SETTINGS
@given(spec=worlds)
def test_over_http_an_agent_reaches_only_its_own_sessions(spec):
    each_example_rolled_back(lambda: check_http(build(spec)))


# --- Over the WebSocket: the snapshot and the live events ---------------------------------------
# Each example is an async scenario against the real ASGI application and Redis channel layer,
# with real commits (the consumer reads from its own thread; events leave on commit): a few
# examples only. Rows are not rolled back between examples; the names are unique per example.

WS_SETTINGS = settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture
def celery_eager():
    # The follow-up tasks of an ended session run in the test (nothing here talks to a Media
    # Blender) instead of waiting in the shared Redis queue for some later test's worker.
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


@pytest.mark.django_db(transaction=True)
@WS_SETTINGS
@given(spec=worlds)
def test_over_the_websocket_an_agent_hears_only_its_own_sessions(celery_eager, spec):
    world = build(spec)
    actor = world.actor
    cookie = session_cookie(actor.user)
    foreign_open = [s for s in world.foreign if s.state in OPEN_STATES]
    own_open = [s for s in world.own if s.state in OPEN_STATES]
    user = actor.user

    async def scenario() -> tuple[dict, list[dict]]:
        socket = open_socket("/ws/agent/", cookie=cookie)
        connected, _ = await socket.connect(timeout=TIMEOUT)
        assert connected
        snapshot = await socket.receive_json_from(timeout=TIMEOUT)
        # Every other open session ends first; then one change of the agent's own (the
        # sentinel). Anything of another agent's that leaked would arrive before the sentinel.
        for session in foreign_open:
            await sync_to_async(session_end)(session_id=session.pk, actor="system:test", reason=EndReason.ADMIN_ENDED)
        if own_open:
            await sync_to_async(session_end)(session_id=own_open[0].pk, actor=user, reason=EndReason.AGENT_ENDED)
        else:
            await sync_to_async(_publish_agent)(actor.pk)
        received = []
        while True:
            message = await socket.receive_json_from(timeout=TIMEOUT)
            if message["type"] == "heartbeat":
                continue
            received.append(message)
            if _is_sentinel(message, actor.pk, own_open):
                break
        await socket.disconnect()
        return snapshot, received

    snapshot, received = run(scenario)

    assert snapshot["type"] == "snapshot"
    assert snapshot["data"]["agent"]["id"] == actor.pk
    assert {s["id"] for s in snapshot["data"]["sessions"]} == {str(s.pk) for s in own_open}
    # Queued sessions are nobody's yet: one may be routed to this agent meanwhile (its own then).
    foreign_names = {s.caller_name for s in world.sessions if s.agent_id not in (None, actor.pk)}
    assert not foreign_names & {s["caller_name"] for s in snapshot["data"]["sessions"]}
    for event in received:
        if event["type"] == "session.changed":
            assert event["data"]["agent"] == actor.pk, event
            assert event["data"]["caller_name"] not in foreign_names
        else:
            assert event["type"] == "agent.changed", event
            assert event["data"]["id"] == actor.pk, event


def _publish_agent(agent_id: int) -> None:
    """The agent's own ``agent.changed``, as every change of its state sends it."""
    with transaction.atomic():
        publish_agent(Agent.objects.get(pk=agent_id))


def _is_sentinel(message: dict, agent_id: int, own_open: list[CollaborationSession]) -> bool:
    if own_open:
        return message["type"] == "session.changed" and message["data"]["id"] == str(own_open[0].pk)
    return message["type"] == "agent.changed" and message["data"]["id"] == agent_id
