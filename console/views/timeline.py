"""The Administration desktop's event timeline (``/console/timeline/``): failovers and the audit history.

Two lists, newest first, each paginated on its own (``?page=`` for the failover events,
``?audit_page=`` for the audit history): the failover events with their detection and
switch-over durations, and every audited action with who or what did it, why, and the
values before and after. ``?server=<id>`` narrows both to one server (the audit entries
about the server, its links, peers, alerts, agents, sessions, wizard and sync runs);
``?action=`` narrows the audit history to one action; ``?from=`` and ``?to=`` (dates or ISO 8601
times, common/date_range.py) narrow both to a date range, and a bad range answers 400 with
the form's error. Both lists export as CSV with the same filters (console/views/exports.py).

Like every console page, ``?fragment=1`` answers the live fragment alone. Four queries for
the fragment (a count and a slice per list), plus the server list of the filter form on
the page, whatever the length of the history.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.core.paginator import Paginator
from django.db.models import QuerySet, Value
from django.db.models.functions import Replace
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from common.date_range import DateRange, DateRangeError, date_range_from
from common.roles import VIEW_DESKTOP
from console.audit_scope import audit_about_server
from console.pages import paginate, render_console, requires_permission, wants_fragment
from console.views.overview import with_durations
from failover.choices import AuditAction
from failover.models import AuditEntry, FailoverEvent, Server
from sessions.models import Agent

EVENTS_PAGE_SIZE = 25
AUDIT_PAGE_SIZE = 25
AUDIT_PAGE_PARAM = "audit_page"


@dataclass(frozen=True)
class TimelineFilter:
    server_id: int | None = None
    action: str = ""
    dates: DateRange = DateRange()
    # The date range's errors by parameter (``from``, ``to``): the page answers 400 with them.
    date_errors: dict[str, str] | None = None

    @classmethod
    def from_request(cls, request: HttpRequest) -> TimelineFilter:
        server = request.GET.get("server", "")
        action = request.GET.get("action", "")
        dates, errors = dates_from_request(request)
        return cls(
            server_id=int(server) if server.isdigit() and len(server) < 19 else None,
            action=action if action in AuditAction.values else "",
            dates=dates,
            date_errors=errors,
        )

    @property
    def active(self) -> bool:
        return self.server_id is not None or bool(self.action) or self.dates.active


def dates_from_request(request: HttpRequest) -> tuple[DateRange, dict[str, str] | None]:
    """The page's date range, or no range and the errors to show (with the text typed)."""
    try:
        return date_range_from(request.GET), None
    except DateRangeError as invalid:
        typed = DateRange(from_text=request.GET.get("from", "")[:40], to_text=request.GET.get("to", "")[:40])
        return typed, invalid.errors


def event_rows(filters: TimelineFilter) -> QuerySet[FailoverEvent]:
    rows = FailoverEvent.objects.select_related("server", "link", "from_peer", "to_peer", "actor")
    if filters.server_id is not None:
        rows = rows.filter(server_id=filters.server_id)
    return filters.dates.apply(rows, "detected_at").order_by("-detected_at", "-id")


def audit_rows(filters: TimelineFilter) -> QuerySet[AuditEntry]:
    rows = AuditEntry.objects.all()
    if filters.server_id is not None:
        rows = rows.alias(object_key=Replace("object_id", Value("-"), Value(""))).filter(
            audit_about_server(filters.server_id)
        )
    if filters.action:
        rows = rows.filter(action=filters.action)
    return filters.dates.apply(rows, "created_at").order_by("-created_at", "-id")


# Audit values that some writers record as a row's id (the routing hot path records the
# agent's id rather than join for its name; a failed server's sessions record their server's
# id): shown by the row's name, as a person reads it. Two queries a page at most.
Names = dict[str, dict[int, str]]
NAMED_FIELDS = ("server", "agent")


def _ids(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def names_of(entries: list[AuditEntry]) -> Names:
    """The names of the servers and agents that ``entries`` record by id."""
    wanted: dict[str, set[int]] = {field: set() for field in NAMED_FIELDS}
    for entry in entries:
        for side in (entry.before, entry.after):
            for field in NAMED_FIELDS:
                if isinstance(side, dict) and _ids(side.get(field)):
                    wanted[field].add(side[field])
    names: Names = {"server": {}, "agent": {}}
    if wanted["server"]:
        names["server"] = dict(Server.objects.filter(pk__in=wanted["server"]).values_list("pk", "name"))
    if wanted["agent"]:
        agents = Agent.objects.filter(pk__in=wanted["agent"]).select_related("user")
        names["agent"] = {agent.pk: agent.display_name for agent in agents}
    return names


def _text(value: Any, field: str = "", names: Names | None = None) -> str:
    if value is None or value == "":
        return "—"
    if field in NAMED_FIELDS and _ids(value) and names is not None:
        return names[field].get(value, f"{field} #{value} (deleted)")
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(", ", ": "))
    return str(value)


def changes(before: dict[str, Any], after: dict[str, Any], names: Names | None = None) -> list[dict[str, Any]]:
    """The fields of an audit entry's before and after, in order, as text: what changed,
    what was only known before, what only after; servers and agents by name."""
    before = before if isinstance(before, dict) else {"value": before}
    after = after if isinstance(after, dict) else {"value": after}
    rows = []
    for key in [*before, *(key for key in after if key not in before)]:
        shown_before = _text(before.get(key), key, names) if key in before else ""
        shown_after = _text(after.get(key), key, names) if key in after else ""
        rows.append(
            {
                "field": key,
                "before": shown_before,
                "after": shown_after,
                "changed": shown_before != shown_after
                if key in before and key in after
                else before.get(key) != after.get(key),
            }
        )
    return rows


def timeline_context(request: HttpRequest) -> dict[str, Any]:
    filters = TimelineFilter.from_request(request)
    events = paginate(request, event_rows(filters), EVENTS_PAGE_SIZE)
    events.object_list = with_durations(list(events.object_list))
    audit = Paginator(audit_rows(filters), AUDIT_PAGE_SIZE).get_page(request.GET.get(AUDIT_PAGE_PARAM))
    audit.object_list = list(audit.object_list)
    names = names_of(audit.object_list)
    for entry in audit.object_list:
        entry.changes = changes(entry.before, entry.after, names)
    context: dict[str, Any] = {"filters": filters, "events": events, "audit": audit}
    if not wants_fragment(request):
        # The filter form is on the page only: a live refresh never resets what is being chosen.
        context["server_options"] = list(Server.objects.order_by("name").values_list("id", "name"))
        context["action_options"] = AuditAction.choices
    return context


@requires_permission(VIEW_DESKTOP)
@require_GET
def timeline(request: HttpRequest) -> HttpResponse:
    context = timeline_context(request)
    response = render_console(request, "console/timeline.html", "console/_timeline.html", context)
    if context["filters"].date_errors and not wants_fragment(request):
        # The form's error, as a form post would get it; the live refresh of that page
        # still gets its (unfiltered) fragment.
        response.status_code = 400
    return response
