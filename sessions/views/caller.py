"""The caller's side: the request form (anonymous) and the "you are in the queue" page.

The queue page is found by the session's UUID alone: it is not guessable, and a caller
has no account. Bad input re-renders the form with its errors and status 400 (the issue
asks for a 4xx on bad input, like the API); no healthy routing server is a 503 with
``Retry-After``, on the form's GET as well, so a caller learns it before typing.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from common.client_address import client_ip
from common.rate_limit import rate_limited_post
from sessions.choices import EndReason, SessionState
from sessions.endings import caller_message
from sessions.forms import CallerRequestForm
from sessions.models import CollaborationSession
from sessions.services.director import NoHealthyServer, choose_server
from sessions.services.lifecycle import IllegalTransition, session_end
from sessions.services.requests import session_request

# The audit history's actor for a request from the anonymous web form.
WEB_CALLER = "caller:web"
# How often the queue page asks for its state (milliseconds, read by waiting.js).
POLL_INTERVAL_MS = 3000


def _add_service_errors(form: CallerRequestForm, error: ValidationError) -> None:
    """Show a service's ValidationError on the form: on its field when the form has one."""
    errors = error.message_dict if hasattr(error, "error_dict") else {NON_FIELD_ERRORS: error.messages}
    for field, messages in errors.items():
        form.add_error(field if field in form.fields else None, messages)


def _unavailable(request: HttpRequest, form: CallerRequestForm, retry_after: int) -> HttpResponse:
    response = render(request, "caller/request.html", {"form": form, "unavailable": True}, status=503)
    response["Retry-After"] = str(retry_after)
    return response


@never_cache
@require_http_methods(["GET", "POST"])
@rate_limited_post("caller", "RATE_LIMIT_CALLER", client_ip)
def request_form(request: HttpRequest) -> HttpResponse:
    """Ask for a collaboration session; on success, redirect to its queue page."""
    if request.method == "GET":
        form = CallerRequestForm()
        try:
            choose_server()
        except NoHealthyServer as unavailable:
            return _unavailable(request, form, unavailable.retry_after)
        return render(request, "caller/request.html", {"form": form})

    form = CallerRequestForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            session = session_request(
                caller_name=data["caller_name"],
                caller_contact=data["caller_contact"],
                topic=data["topic"],
                skill_group_name=data["skill_group"] or None,
                actor=request.user if request.user.is_authenticated else WEB_CALLER,
            )
        except NoHealthyServer as unavailable:
            return _unavailable(request, form, unavailable.retry_after)
        except ValidationError as invalid:
            _add_service_errors(form, invalid)
        else:
            return redirect("caller:waiting", session_id=session.pk)
    return render(request, "caller/request.html", {"form": form}, status=400)


def _status_context(session_id: uuid.UUID) -> dict[str, Any]:
    session = get_object_or_404(CollaborationSession.objects.select_related("skill_group"), pk=session_id)
    ahead = None
    if session.state == SessionState.QUEUED:
        # An indication, not a promise: routing also depends on skill groups and agents.
        ahead = CollaborationSession.objects.filter(
            server_id=session.server_id, state=SessionState.QUEUED, queued_at__lt=session.queued_at
        ).count()
    ended = caller_message(session) if not session.is_open else ""
    return {"session": session, "ahead": ahead, "poll_interval_ms": POLL_INTERVAL_MS, "ended_message": ended}


@never_cache
@require_GET
def waiting(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    """The caller's page while queued, being connected or in session; it refreshes itself."""
    return render(request, "caller/waiting.html", _status_context(session_id))


@never_cache
@require_GET
def waiting_status(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    """The queue page's status fragment alone (the one the page includes), for its refresh."""
    return render(request, "caller/_status.html", _status_context(session_id))


@require_POST
def leave(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    """The caller gives up waiting (or closes the session): ended with ``caller_left``."""
    session = get_object_or_404(CollaborationSession, pk=session_id)
    try:
        session_end(session_id=session.pk, actor=WEB_CALLER, reason=EndReason.CALLER_LEFT)
    except IllegalTransition:
        pass  # Ended meanwhile (by the agent, say): the page shows how it ended.
    return redirect("caller:waiting", session_id=session.pk)
