"""The Administration desktop's sessions page (``/console/sessions/``) and its action.

Every collaboration session, newest first, filtered by state, server, agent and the date range
the caller asked in (``from``/``to``; a bad range answers 400 with the form's error), a plain
GET form, 50 a page, exported as CSV with the same filters (console/views/exports.py). An
administrator ends an open one with a reason through the shared confirmation dialog. Ending
goes through ``session_end`` (which locks, audits and publishes), so every console and the
agent's desktop see it at once.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from common.roles import END_SESSIONS, VIEW_DESKTOP
from console.live_fragments import shared_fragment
from console.pages import (
    paginate,
    read_reason,
    reason_refusal,
    redirect_back,
    render_console,
    requires_permission,
    wants_fragment,
)
from console.session_rows import with_rows
from console.views.filters import (
    choice_param,
    duration_text,
    id_param,
    seconds_between,
    server_options,
)
from console.views.timeline import dates_from_request
from sessions.choices import EndReason, SessionState
from sessions.models import Agent, CollaborationSession
from sessions.services.lifecycle import IllegalTransition, session_end

OPEN = "open"  # the state filter's "not ended"
STATE_OPTIONS = [(OPEN, "Open (not ended)"), *SessionState.choices]


def session_rows(*, state: str, server_id: int | None, agent_id: int | None) -> QuerySet[CollaborationSession]:
    """The filtered sessions, newest first, with everything a row shows (one query a page)."""
    rows = CollaborationSession.objects.select_related("server", "skill_group", "agent__user", "ended_by").order_by(
        "-queued_at", "-id"
    )
    if state == OPEN:
        rows = rows.exclude(state=SessionState.ENDED)
    elif state:
        rows = rows.filter(state=state)
    if server_id is not None:
        rows = rows.filter(server_id=server_id)
    if agent_id is not None:
        rows = rows.filter(agent_id=agent_id)
    return rows


def _with_waits(sessions: list[CollaborationSession]) -> list[CollaborationSession]:
    """Each row's wait in the queue: until routed (or ended unrouted), or until now while queued."""
    now = timezone.now()
    for session in sessions:
        session.still_waiting = session.state == SessionState.QUEUED
        end = now if session.still_waiting else (session.routed_at or session.ended_at)
        session.waited = duration_text(seconds_between(session.queued_at, end))
    return sessions


def agent_options() -> list[dict[str, Any]]:
    """Every agent for the filter's <select>, grouped by server: one query."""
    rows = Agent.objects.order_by("server__name", "user__username").values(
        "id", "server__name", "user__username", "user__first_name", "user__last_name"
    )
    return [
        {
            "id": row["id"],
            "server": row["server__name"],
            "name": f"{row['user__first_name']} {row['user__last_name']}".strip() or row["user__username"],
        }
        for row in rows
    ]


@requires_permission(VIEW_DESKTOP)
@require_GET
@shared_fragment(wants_fragment)  # the live fragment: one render per filters and event
def sessions_page(request: HttpRequest) -> HttpResponse:
    filters = {
        "state": choice_param(request, "state", [value for value, _ in STATE_OPTIONS]),
        "server": id_param(request, "server"),
        "agent": id_param(request, "agent"),
    }
    dates, date_errors = dates_from_request(request)
    rows = session_rows(state=filters["state"], server_id=filters["server"], agent_id=filters["agent"])
    page = paginate(request, dates.apply(rows, "queued_at"))
    # Each row rendered once per change of what it shows (console/session_rows.py).
    page.object_list = with_rows(_with_waits(list(page.object_list)), request.user)
    context: dict[str, Any] = {
        "page": page,
        "filters": filters,
        "filtered": any(value not in ("", None) for value in filters.values()) or dates.active,
        "dates": dates,
        "date_errors": date_errors,
    }
    if not wants_fragment(request):  # the filter form is outside the live fragment
        context |= {"state_options": STATE_OPTIONS, "servers": server_options(), "agents": agent_options()}
    response = render_console(request, "console/sessions.html", "console/_sessions.html", context)
    if date_errors and not wants_fragment(request):
        # The form's error, as a form post would get it; the live refresh of that page
        # still gets its (unfiltered) fragment.
        response.status_code = 400
    return response


@requires_permission(END_SESSIONS)
@require_POST
def session_end_view(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    """End one session as its administrator (``admin_ended``), the dialog's reason as the note."""
    session = CollaborationSession.objects.filter(pk=session_id).only("caller_name", "state").first()
    if session is None:
        messages.error(request, "That session does not exist (any more); nothing was done.")
        return redirect_back(request, "console-sessions")
    label = f"the session with {session.caller_name}"
    reason = read_reason(request)
    if refusal := reason_refusal(reason):
        messages.error(request, f"End of {label} not done: {refusal}")
        return redirect_back(request, "console-sessions")
    try:
        session_end(session_id=session.pk, actor=request.user, reason=EndReason.ADMIN_ENDED, note=reason)
    except IllegalTransition:
        # Two administrators, the agent or a policy got there first.
        messages.warning(request, f"The session with {session.caller_name} had already ended; nothing was done.")
    except CollaborationSession.DoesNotExist:
        messages.error(request, f"The session with {session.caller_name} no longer exists; nothing was done.")
    else:
        messages.success(request, f"The session with {session.caller_name} has ended.")
    return redirect_back(request, "console-sessions")
