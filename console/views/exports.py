"""CSV exports of the console's histories (``/console/export/*.csv``), streamed.

Each takes the same GET filters as its page (the timeline's ``server``, ``action``, ``from``
and ``to``; the sessions page's ``state``, ``server``, ``agent``, ``from`` and ``to``), so
the page's "Export CSV" link exports what the page lists, every page of it, in the same
order. For view_desktop, like the pages; reads are not audited here, as the pages' are not. A
bad date range answers 400 with the reason, as text.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.views.decorators.http import require_GET

from common.csv_export import csv_response
from common.date_range import DateRangeError, date_range_from
from common.roles import VIEW_DESKTOP
from console.pages import requires_permission
from console.views.filters import choice_param, id_param
from console.views.sessions import STATE_OPTIONS, session_rows
from console.views.timeline import TimelineFilter, audit_rows, event_rows
from failover.exports import AUDIT_COLUMNS, EVENT_COLUMNS
from sessions.exports import SESSION_COLUMNS


def _bad_range(invalid: DateRangeError) -> HttpResponse:
    lines = [f"{name}: {message}" for name, message in invalid.errors.items()]
    return HttpResponseBadRequest("\n".join(lines), content_type="text/plain; charset=utf-8")


@requires_permission(VIEW_DESKTOP)
@require_GET
def events_csv(request: HttpRequest) -> HttpResponse:
    filters = TimelineFilter.from_request(request)
    if filters.date_errors:
        return _bad_range(DateRangeError(filters.date_errors))
    return csv_response(request, event_rows(filters), EVENT_COLUMNS, filename="failover-events.csv")


@requires_permission(VIEW_DESKTOP)
@require_GET
def audit_csv(request: HttpRequest) -> HttpResponse:
    filters = TimelineFilter.from_request(request)
    if filters.date_errors:
        return _bad_range(DateRangeError(filters.date_errors))
    return csv_response(request, audit_rows(filters), AUDIT_COLUMNS, filename="audit-history.csv")


@requires_permission(VIEW_DESKTOP)
@require_GET
def sessions_csv(request: HttpRequest) -> HttpResponse:
    try:
        dates = date_range_from(request.GET)
    except DateRangeError as invalid:
        return _bad_range(invalid)
    rows = session_rows(
        state=choice_param(request, "state", [value for value, _ in STATE_OPTIONS]),
        server_id=id_param(request, "server"),
        agent_id=id_param(request, "agent"),
    )
    return csv_response(request, dates.apply(rows, "queued_at"), SESSION_COLUMNS, filename="sessions.csv")
