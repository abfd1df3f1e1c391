"""The Agent desktop: log-in and log-out, ready / not ready, own sessions, join and end.

Every page is server-rendered; the live parts are template fragments that the page
includes and that ``static/agent/desktop.js`` fetches again when the WebSocket reports a
change, so the first render and every update come from the same template.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.contrib.auth.views import LoginView, LogoutView
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from sessions.choices import EndReason, LogoutReason, PhoneLeg
from sessions.endings import ended_by, recently_ended
from sessions.forms import AgentAuthenticationForm
from sessions.models import Agent, CollaborationSession
from sessions.permissions import agent_of
from sessions.services.lifecycle import (
    IllegalTransition,
    agent_login,
    agent_logout,
    agent_set_ready,
    session_end,
    surviving_desktops,
)
from sessions.views.access import agent_required, own_open_sessions, own_session_or_404


class AgentLoginView(LoginView):
    """Django's log-in page for agents; a successful log-in also logs the agent in to the
    contact centre (not ready), explicitly here rather than in a signal."""

    template_name = "agent/login.html"
    authentication_form = AgentAuthenticationForm
    next_page = reverse_lazy("agent:desktop")

    def form_valid(self, form: AgentAuthenticationForm) -> HttpResponse:
        user = form.get_user()
        agent = agent_of(user)
        # The form has refused non-agents already; the service is called before the
        # Django log-in, so a refusal there (agent disabled meanwhile) leaves no session.
        try:
            if agent is None:
                raise ValidationError(AgentAuthenticationForm.error_messages["not_an_agent"])
            agent_login(agent_id=agent.pk, actor=user)
        except ValidationError as refused:
            form.add_error(None, refused)
            return self.form_invalid(form)
        return super().form_valid(form)


class AgentLogoutView(LogoutView):
    """POST only (Django's LogoutView): logs the agent out of the contact centre, then ends
    the browser's session. Open sessions stay as they are (docs/product.md, 'Caller hung up')."""

    next_page = reverse_lazy("agent:login")

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        agent = agent_of(request.user)
        if agent is not None:
            agent_logout(agent_id=agent.pk, actor=request.user, reason=LogoutReason.AGENT)
        return super().post(request, *args, **kwargs)


def _state_context(agent: Agent) -> dict[str, Any]:
    """The state panel's context: the agent, and while its server has failed, where else
    to log in (nothing can be routed to it through a failed server)."""
    server = agent.server
    failed = server.failed_at is not None
    return {
        "agent": agent,
        "failed_server": server if failed else None,
        # Planned maintenance: no new session comes; the agent is asked to finish its own.
        "draining_server": server if server.is_draining and not failed else None,
        "surviving_desktops": surviving_desktops(besides=server.pk) if failed else [],
    }


def sessions_context(agent: Agent) -> dict[str, Any]:
    """The open-sessions list's context (the page, its fetch, and the list pushed on the
    agent's socket: sessions/list_push.py)."""
    sessions = list(own_open_sessions(agent.pk))
    return {
        "agent": agent,
        "sessions": sessions,
        "hung_up_count": sum(1 for session in sessions if session.phone_leg == PhoneLeg.HUNG_UP),
        "unknown_count": sum(1 for session in sessions if session.phone_leg == PhoneLeg.UNKNOWN),
        # A session ended by someone else (an administrator, the caller, a policy) would
        # otherwise just vanish from the list: keep it in sight for a while, saying why.
        "recently_ended": recently_ended(agent.pk, viewer_user_id=agent.user_id),
    }


@never_cache
@require_GET
@agent_required
def desktop(request: HttpRequest, agent: Agent) -> HttpResponse:
    """The desktop: the agent's state and its open sessions, kept live by desktop.js."""
    return render(request, "agent/desktop.html", sessions_context(agent) | _state_context(agent))


@never_cache
@require_GET
@agent_required
def state_partial(request: HttpRequest, agent: Agent) -> HttpResponse:
    """The state panel alone (the fragment the desktop includes), for live refreshes."""
    return render(request, "agent/_state.html", _state_context(agent))


@never_cache
@require_GET
@agent_required
def sessions_partial(request: HttpRequest, agent: Agent) -> HttpResponse:
    """The open-sessions list alone (the fragment the desktop includes), for live refreshes."""
    return render(request, "agent/_sessions.html", sessions_context(agent))


@never_cache
@require_GET
@agent_required
def desk_partial(request: HttpRequest, agent: Agent) -> HttpResponse:
    """The state panel and the open-sessions list in one answer, each in its
    ``data-live-part``: what the desktop fetches on its snapshot and its periodic resync,
    which refresh both (one request instead of two, and the session, user and agent read
    once: with a thousand desktops open, their resyncs were most of a node's requests)."""
    return render(request, "agent/_desk.html", sessions_context(agent) | _state_context(agent))


@require_POST
@agent_required
def set_ready(request: HttpRequest, agent: Agent) -> HttpResponse:
    """Ready (``ready=1``) or not ready (``ready=0``), then back to the desktop. Refused with
    a message while the agent's server has failed (the message says where to log in)."""
    choice = request.POST.get("ready")
    if choice not in ("0", "1"):
        return HttpResponseBadRequest("Send ready=1 (ready) or ready=0 (not ready).")
    try:
        agent_set_ready(agent_id=agent.pk, ready=choice == "1", actor=request.user)
    except IllegalTransition as refused:
        messages.error(request, " ".join(refused.messages))
    return redirect("agent:desktop")


@never_cache
@require_GET
@agent_required
def session_detail(request: HttpRequest, agent: Agent, session_id: uuid.UUID) -> HttpResponse:
    """The page of one of the agent's own sessions (the "Join" target)."""
    session = own_session_or_404(agent, session_id)
    return render(request, "agent/session.html", _session_context(agent, session))


@never_cache
@require_GET
@agent_required
def session_partial(request: HttpRequest, agent: Agent, session_id: uuid.UUID) -> HttpResponse:
    """The session page's details fragment, for live refreshes."""
    session = own_session_or_404(agent, session_id)
    return render(request, "agent/_session_detail.html", _session_context(agent, session))


def _session_context(agent: Agent, session: CollaborationSession) -> dict[str, Any]:
    ending = ended_by(session, viewer_user_id=agent.user_id) if not session.is_open else None
    return {"agent": agent, "session": session, "ending": ending}


@require_POST
@agent_required
def session_end_view(request: HttpRequest, agent: Agent, session_id: uuid.UUID) -> HttpResponse:
    """End one of the agent's own sessions (``agent_ended``), then back to the desktop."""
    session: CollaborationSession = own_session_or_404(agent, session_id)
    try:
        session_end(session_id=session.pk, actor=request.user, reason=EndReason.AGENT_ENDED)
    except IllegalTransition:
        # Two clicks, two tabs, or a policy got there first: the outcome the agent wanted.
        messages.info(request, f"The session with {session.caller_name} had already ended.")
    else:
        messages.success(request, f"The session with {session.caller_name} has ended.")
    return redirect("agent:desktop")
