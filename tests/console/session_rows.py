"""Set-up helpers of the console's sessions, agents and queue page tests (issue 5): rows
written directly (the services have their own tests), respecting the constraints."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from console.live_fragments import shared_renders
from failover.models import Server
from sessions.choices import AgentState, EndReason, SessionState
from sessions.models import Agent, CollaborationSession, SkillGroup
from tests.factories import SessionFactory


def queued_session(server: Server, *, waited: float = 0, **fields: object) -> CollaborationSession:
    """A session waiting in ``server``'s queue for ``waited`` seconds."""
    return SessionFactory(server=server, queued_at=timezone.now() - timedelta(seconds=waited), **fields)


def ended_session(server: Server, **fields: object) -> CollaborationSession:
    fields.setdefault("end_reason", EndReason.CALLER_LEFT)
    return SessionFactory(server=server, state=SessionState.ENDED, ended_at=timezone.now(), **fields)


def queries_of(client: Client, url: str) -> int:
    """How many SQL queries one GET of ``url`` runs (it must answer 200). A live fragment
    is rendered, not taken from the renders shared by its watchers: the render is measured."""
    shared_renders.clear()
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(captured)


def bulk_world(*, servers: int, sessions: int, prefix: str = "bulk") -> None:
    """``servers`` servers, each with a skill group and a logged-in agent, and ``sessions``
    sessions spread over them: queued, active and ended. bulk_create only: seconds, not minutes."""
    now = timezone.now()
    Server.objects.bulk_create(Server(name=f"{prefix}-{n:05d}") for n in range(servers))
    server_ids = list(
        Server.objects.filter(name__startswith=f"{prefix}-").order_by("name").values_list("id", flat=True)
    )
    SkillGroup.objects.bulk_create(
        SkillGroup(server_id=server_id, icm_id=f"{prefix}-SG{n}", name=f"Support {n}")
        for n, server_id in enumerate(server_ids)
    )
    groups = dict(SkillGroup.objects.filter(server_id__in=server_ids).values_list("server_id", "id"))
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"{prefix}-agent-{n}", first_name="Agent", last_name=str(n), password="!")
        for n in range(servers)
    )
    user_ids = list(
        get_user_model()
        .objects.filter(username__in=[user.username for user in users])
        .order_by("id")
        .values_list("id", flat=True)
    )
    Agent.objects.bulk_create(
        Agent(
            user_id=user_id,
            server_id=server_id,
            icm_id=f"{prefix}-A{n}",
            state=AgentState.READY if n % 2 else AgentState.NOT_READY,
            logged_in_at=now,
            max_sessions=3,
        )
        for n, (user_id, server_id) in enumerate(zip(user_ids, server_ids, strict=True))
    )
    Agent.skill_groups.through.objects.bulk_create(
        Agent.skill_groups.through(agent_id=agent_id, skillgroup_id=groups[server_id])
        for agent_id, server_id in Agent.objects.filter(server_id__in=server_ids).values_list("id", "server_id")
    )
    agents = dict(Agent.objects.filter(server_id__in=server_ids).values_list("server_id", "id"))
    rows = []
    for n in range(sessions):
        server_id = server_ids[n % len(server_ids)]
        queued_at = now - timedelta(seconds=n)
        row = CollaborationSession(
            server_id=server_id, skill_group_id=groups[server_id], caller_name=f"Caller {n}", queued_at=queued_at
        )
        if n % 3 == 1:
            row.state, row.agent_id, row.routed_at, row.activated_at = SessionState.ACTIVE, agents[server_id], now, now
        elif n % 3 == 2:
            row.state, row.end_reason, row.ended_at = SessionState.ENDED, EndReason.CALLER_LEFT, now
        rows.append(row)
    CollaborationSession.objects.bulk_create(rows, batch_size=2000)


def csrf_client(user: object, page: str = "/console/sessions/") -> tuple[Client, str]:
    """A client that enforces CSRF like a browser, logged in as ``user``, with the token a
    GET of ``page`` gave it."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get(page).status_code == 200
    return client, client.cookies["csrftoken"].value
