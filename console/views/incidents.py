"""Incidents: the list (``/console/incidents/``, newest first, by server) and one
incident's page (``/console/incidents/<event id>/``): the report of one failure.

What ``console.incidents.incident_report`` reads, shown as a page: the failure's times,
the sessions open at that moment and what became of each, the alerts raised and the
administrators' actions that followed. Live like every console page (``?fragment=1``): a
session that ends later, or an action taken now, shows up without a reload.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from common.roles import VIEW_DESKTOP
from console.incidents import incident_report, incident_rows
from console.pages import paginate, render_console, requires_permission
from console.views.filters import id_param, server_options
from console.views.overview import with_durations
from sessions.choices import SessionState

STATES_AT_INCIDENT = [
    (SessionState.ACTIVE, "Active"),
    (SessionState.IN_TRANSIT, "In transit"),
    (SessionState.QUEUED, "Queued"),
]


@requires_permission(VIEW_DESKTOP)
@require_GET
def incident_page(request: HttpRequest, event_id: int) -> HttpResponse:
    event = get_object_or_404(incident_rows(), pk=event_id)
    with_durations([event])
    report = incident_report(event)
    groups = [
        {"state": state, "label": label, "fates": report.sessions_in(state)} for state, label in STATES_AT_INCIDENT
    ]
    context = {"event": event, "report": report, "groups": groups}
    return render_console(request, "console/incident.html", "console/_incident.html", context)


@requires_permission(VIEW_DESKTOP)
@require_GET
def incidents_page(request: HttpRequest) -> HttpResponse:
    server_id = id_param(request, "server")
    rows = incident_rows()
    if server_id is not None:
        rows = rows.filter(server_id=server_id)
    page = paginate(request, rows)
    page.object_list = list(page.object_list)
    with_durations(page.object_list)
    context = {
        "page": page,
        "filters": {"server": server_id},
        "filtered": server_id is not None,
        "servers": server_options(),
    }
    return render_console(request, "console/incidents.html", "console/_incidents.html", context)
