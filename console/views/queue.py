"""The Administration desktop's queue page (``/console/queue/``).

Queue depth and oldest wait per server and per skill group (one aggregate query), and the
queued sessions themselves, oldest first, 50 a page; optionally one server's queue only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count, Min, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from common.roles import VIEW_DESKTOP
from console.pages import paginate, render_console, requires_permission, wants_fragment
from console.views.filters import duration_text, id_param, seconds_between, server_options
from sessions.choices import SessionState
from sessions.models import CollaborationSession

SUMMARY_SERVERS = 50  # the servers shown in the summary: the longest waits first


@dataclass
class QueueGroup:
    """The queued sessions of one server and skill group (or of a whole server)."""

    name: str
    depth: int
    oldest: datetime
    wait: str = ""


@dataclass
class ServerQueue(QueueGroup):
    server_id: int = 0
    groups: list[QueueGroup] = field(default_factory=list)


def queued(server_id: int | None) -> QuerySet[CollaborationSession]:
    rows = CollaborationSession.objects.filter(state=SessionState.QUEUED)
    return rows if server_id is None else rows.filter(server_id=server_id)


def queue_summary(server_id: int | None, now: datetime) -> tuple[list[ServerQueue], QueueGroup | None]:
    """Per server (longest wait first) with its skill groups, and the total: one query."""
    rows = (
        queued(server_id)
        .values("server_id", "server__name", "skill_group__name")
        .annotate(depth=Count("id"), oldest=Min("queued_at"))
        .order_by("server__name", "skill_group__name")
    )
    servers: dict[int, ServerQueue] = {}
    for row in rows:
        group = QueueGroup(row["skill_group__name"] or "Any agent", row["depth"], row["oldest"])
        group.wait = duration_text(seconds_between(group.oldest, now))
        server = servers.get(row["server_id"])
        if server is None:
            server = servers[row["server_id"]] = ServerQueue(
                row["server__name"], 0, group.oldest, server_id=row["server_id"]
            )
        server.depth += group.depth
        server.oldest = min(server.oldest, group.oldest)
        server.groups.append(group)
    by_wait = sorted(servers.values(), key=lambda server: (server.oldest, server.name))
    for server in by_wait:
        server.wait = duration_text(seconds_between(server.oldest, now))
    if not by_wait:
        return [], None
    total = QueueGroup("All servers", sum(s.depth for s in by_wait), by_wait[0].oldest)
    total.wait = duration_text(seconds_between(total.oldest, now))
    return by_wait, total


@requires_permission(VIEW_DESKTOP)
@require_GET
def queue_page(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    filters = {"server": id_param(request, "server")}
    servers, total = queue_summary(filters["server"], now)
    page = paginate(
        request, queued(filters["server"]).select_related("server", "skill_group").order_by("queued_at", "id")
    )
    page.object_list = list(page.object_list)
    for session in page.object_list:
        session.waited = duration_text(seconds_between(session.queued_at, now))
    context: dict[str, Any] = {
        "page": page,
        "filters": filters,
        "filtered": filters["server"] is not None,
        "summary": servers[:SUMMARY_SERVERS],
        "summary_hidden": max(len(servers) - SUMMARY_SERVERS, 0),
        "total": total,
    }
    if not wants_fragment(request):  # the filter form is outside the live fragment
        context["servers"] = server_options()
    return render_console(request, "console/queue.html", "console/_queue.html", context)
