"""HTML routes of the sessions app, mounted by ``collabadmin.urls``:
``/agent/`` (namespace ``agent``) and ``/request/`` (namespace ``caller``). The
Administration desktop's pages are the console's (``console/urls.py``)."""

from __future__ import annotations

from django.urls import path

from sessions.views import agent, caller

agent_patterns = (
    [
        path("", agent.desktop, name="desktop"),
        path("login/", agent.AgentLoginView.as_view(), name="login"),
        path("logout/", agent.AgentLogoutView.as_view(), name="logout"),
        path("state/", agent.set_ready, name="state"),
        path("partials/state/", agent.state_partial, name="state-partial"),
        path("partials/sessions/", agent.sessions_partial, name="sessions-partial"),
        path("partials/desk/", agent.desk_partial, name="desk-partial"),
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
