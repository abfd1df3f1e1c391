"""Who may open the Agent desktop, and the rows an agent may see.

An agent reaches only its own sessions: every lookup is narrowed to ``agent_id``, so
another agent's session is a 404 (not a 403), and an agent cannot even learn it exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from sessions.choices import SessionState
from sessions.models import Agent, CollaborationSession
from sessions.permissions import agent_of

AgentView = Callable[..., HttpResponse]


def agent_required(view: AgentView) -> Callable[..., HttpResponse]:
    """Run ``view(request, agent, ...)`` for an enabled agent only.

    Anonymous visitors go to the agent log-in page (and come back after it); a logged-in
    user who is not an enabled agent (role holders included) gets a 403 page that says why.
    """

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("agent:login"))
        agent = agent_of(request.user)
        if agent is None:
            return render(request, "agent/forbidden.html", status=403)
        return view(request, agent, *args, **kwargs)

    return wrapper


def own_open_sessions(agent_id: int) -> QuerySet[CollaborationSession]:
    """The agent's sessions that are not ended, oldest request first (one query).

    Also the Agent WebSocket's snapshot, so the page and the socket agree on "open".
    """
    return (
        CollaborationSession.objects.filter(agent_id=agent_id)
        .exclude(state=SessionState.ENDED)
        .select_related("skill_group")
        .order_by("queued_at", "id")
    )


def own_session_or_404(agent: Agent, session_id: uuid.UUID) -> CollaborationSession:
    """One of the agent's own sessions (any state), or 404 whoever else's it is."""
    sessions = CollaborationSession.objects.select_related("skill_group", "ended_by")
    return get_object_or_404(sessions, pk=session_id, agent_id=agent.pk)
