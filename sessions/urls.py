"""HTML routes of the sessions app, mounted by ``collabadmin.urls``:
``/agent/`` (namespace ``agent``), ``/request/`` (namespace ``caller``) and the
Administration desktop's session pages under ``/console/`` (no namespace: ``console-*``)."""

from __future__ import annotations

from django.urls import path

from sessions.views import agent, caller
from sessions.views.console import agents as console_agents
from sessions.views.console import queue as console_queue
from sessions.views.console import sessions as console_sessions

agent_patterns = (
    [
        path("", agent.desktop, name="desktop"),
        path("login/", agent.AgentLoginView.as_view(), name="login"),
        path("logout/", agent.AgentLogoutView.as_view(), name="logout"),
        path("state/", agent.set_ready, name="state"),
        path("partials/state/", agent.state_partial, name="state-partial"),
        path("partials/sessions/", agent.sessions_partial, name="sessions-partial"),
        path("partials/sessions/<uuid:session_id>/", agent.session_partial, name="session-partial"),
        path("sessions/<uuid:session_id>/", agent.session_detail, name="session"),
        path("sessions/<uuid:session_id>/end/", agent.session_end_view, name="session-end"),
    ],
    "agent",
)

caller_patterns = (
    [
        path("", caller.request_form, name="request"),
        path("<uuid:session_id>/", caller.waiting, name="waiting"),
        path("<uuid:session_id>/status/", caller.waiting_status, name="waiting-status"),
        path("<uuid:session_id>/leave/", caller.leave, name="leave"),
    ],
    "caller",
)

console_patterns = [
    path("sessions/", console_sessions.sessions_page, name="console-sessions"),
    path("sessions/<uuid:session_id>/end/", console_sessions.session_end_view, name="console-session-end"),
    path("agents/", console_agents.agents_page, name="console-agents"),
    path("agents/<int:agent_id>/logout/", console_agents.agent_logout_view, name="console-agent-logout"),
    path("queue/", console_queue.queue_page, name="console-queue"),
]
