"""The Administration desktop's overview (``/``): summary, charts, alerts, topology, recent failovers.

One fragment (``console/_overview.html``) renders the page and every live refresh
(``/partials/overview/``, or ``/?fragment=1``); ``static/console/console.js`` re-fetches it
on each event of ``/ws/status/``. For view_desktop.

Built for a large installation (1,000 servers, 10,000 sessions): the summary counts the
whole installation in one aggregate query, the topology shows one page of servers
(``?page=``), those with a problem first (``?show=problems`` for them alone, ``?q=`` to
find servers by name), and the banner lists the newest open alerts. Ten queries in all
(log-in included), whatever the number of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import (
    Case,
    Count,
    Exists,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import TruncHour
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from common.roles import VIEW_DESKTOP
from console.incidents import with_incidents
from console.live_fragments import NOT_IN_KEY, shared_fragment
from console.pages import render_console, requires_permission, wants_fragment
from console.server_cards import server_view, with_cards
from failover import charts
from failover.choices import Health, LinkState
from failover.models import Alert, FailoverEvent, Link, Peer, Server
from failover.services.alert_actions import active_silences, silenced_q
from sessions.models import SessionSample

RECENT_EVENTS = 10
TOPOLOGY_PAGE_SIZE = 24  # full rows of two, three or four cards; a live refresh stays small
BANNER_ALERTS = 20
SEARCH_MAX = 64

SHOW_ALL = "all"
SHOW_PROBLEMS = "problems"

# How bad a server's state is, for ordering the topology (worst first).
RANK_SERVER_DOWN = 3
RANK_LINK_NOT_CONNECTED = 2
RANK_ATTENTION = 1  # a peer down or in maintenance, or an open alert


@dataclass(frozen=True)
class TopologyFilter:
    """The topology's filters, read from the query string (unknown values mean "all")."""

    show: str = SHOW_ALL
    search: str = ""

    @classmethod
    def from_request(cls, request: HttpRequest) -> TopologyFilter:
        show = SHOW_PROBLEMS if request.GET.get("show") == SHOW_PROBLEMS else SHOW_ALL
        return cls(show=show, search=(request.GET.get("q") or "").strip()[:SEARCH_MAX])

    @property
    def active(self) -> bool:
        return self.show != SHOW_ALL or bool(self.search)


# --- What counts as a problem ---------------------------------------------------------------------


def _server_down() -> Q:
    return Q(health=Health.DOWN) | Q(failed_at__isnull=False)


def _link_not_connected() -> Exists:
    return Exists(Link.objects.filter(server=OuterRef("pk")).exclude(state=LinkState.CONNECTED))


def _needs_attention() -> Q:
    peer_trouble = Exists(
        Peer.objects.filter(server=OuterRef("pk")).filter(Q(in_maintenance=True) | Q(health=Health.DOWN))
    )
    open_alert = Exists(Alert.objects.filter(server=OuterRef("pk"), cleared_at__isnull=True))
    return Q(peer_trouble) | Q(open_alert)


def problem_q() -> Q:
    """A server with a problem: down or failed, a link not connected (down or switching over),
    a peer down or in maintenance, or an open alert."""
    return _server_down() | Q(_link_not_connected()) | _needs_attention()


def problem_rank() -> Case:
    return Case(
        When(_server_down(), then=Value(RANK_SERVER_DOWN)),
        When(_link_not_connected(), then=Value(RANK_LINK_NOT_CONNECTED)),
        When(_needs_attention(), then=Value(RANK_ATTENTION)),
        default=Value(0),
        output_field=IntegerField(),
    )


def shown_q(filters: TopologyFilter) -> Q:
    condition = Q()
    if filters.show == SHOW_PROBLEMS:
        condition &= problem_q()
    if filters.search:
        condition &= Q(name__icontains=filters.search)
    return condition


# --- Queries ----------------------------------------------------------------------------------------


def _alert_counts() -> dict[str, Count]:
    """The open alerts by what is being done about them, each counted once: *silenced*
    (its server is in a maintenance window: that comes first), else *acknowledged*, else
    *unhandled* (nobody has said they are on it)."""
    open_alert = Q(alerts__cleared_at__isnull=True)
    silenced = silenced_q(server_ref="pk")
    acknowledged = Q(alerts__acknowledged_at__isnull=False)
    return {
        "n_alerts_silenced": Count("alerts", distinct=True, filter=open_alert & silenced),
        "n_alerts_acknowledged": Count("alerts", distinct=True, filter=open_alert & ~silenced & acknowledged),
        "n_alerts_unhandled": Count("alerts", distinct=True, filter=open_alert & ~silenced & ~acknowledged),
    }


def silenced_until() -> Subquery:
    """The end of the silence in force on the row's server (``server_id``), or null."""
    in_force = active_silences().filter(server_id=OuterRef("server_id")).order_by("-ends_at")
    return Subquery(in_force.values("ends_at")[:1])


def installation_counts(filters: TopologyFilter) -> dict[str, int]:
    """Servers (up, with a problem, shown by the filters), links (connected) and open alerts
    (all, and unhandled, acknowledged and silenced) of the whole installation: one aggregate query."""
    counts = Server.objects.aggregate(
        n_servers=Count("pk", distinct=True),
        n_servers_up=Count("pk", distinct=True, filter=Q(health=Health.UP)),
        n_problems=Count("pk", distinct=True, filter=problem_q()),
        n_shown=Count("pk", distinct=True, filter=shown_q(filters)),
        n_links=Count("links", distinct=True),
        n_links_connected=Count("links", distinct=True, filter=Q(links__state=LinkState.CONNECTED)),
        n_alerts=Count("alerts", distinct=True, filter=Q(alerts__cleared_at__isnull=True)),
        **_alert_counts(),
    )
    # Aggregates named like the relations ("links") would shadow them in the filters above.
    return {name.removeprefix("n_"): value for name, value in counts.items()}


def topology_rows(filters: TopologyFilter) -> QuerySet[Server]:
    """The servers the filters show, the worst first, with their links and peers prefetched."""
    in_force = active_silences().filter(server_id=OuterRef("pk")).order_by("-ends_at")
    rows = Server.objects.annotate(
        problem_rank=problem_rank(),
        silenced_until=Subquery(in_force.values("ends_at")[:1]),
        silence_reason=Subquery(in_force.values("reason")[:1]),
    )
    if filters.show == SHOW_PROBLEMS:
        rows = rows.filter(problem_rank__gt=0)
    if filters.search:
        rows = rows.filter(name__icontains=filters.search)
    return rows.order_by("-problem_rank", "name").prefetch_related(
        # Explicit orderings: the models' default ones join the server table for nothing.
        Prefetch("links", queryset=Link.objects.order_by("kind")),
        Prefetch("peers", queryset=Peer.objects.order_by("kind", "priority")),
    )


def topology_page(request: HttpRequest, filters: TopologyFilter, shown: int) -> Page:
    """One page of servers: the slice and its two prefetches (the count is already known)."""
    paginator = Paginator(topology_rows(filters), TOPOLOGY_PAGE_SIZE)
    paginator.count = shown  # counted by installation_counts(): no COUNT query of its own
    return paginator.get_page(request.GET.get("page"))


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def with_durations(events: list[FailoverEvent]) -> list[FailoverEvent]:
    """Each event's detection and switch-over durations in milliseconds, for the templates."""
    for event in events:
        event.detection_ms = _ms(event.detection_seconds)
        event.switchover_ms = _ms(event.switchover_seconds)
    return events


def activity_chart(now: datetime) -> charts.Chart:
    """Queue depth and active sessions over the last hour: one query."""
    samples = SessionSample.objects.filter(at__gt=now - charts.ACTIVITY_WINDOW, at__lte=now).order_by("at")
    return charts.activity_chart(list(samples.values("at", "queued", "active")), now=now)


def failover_chart(now: datetime) -> charts.Chart:
    """Failovers per hour over the last 24 hours: one ``GROUP BY`` query."""
    rows = (
        FailoverEvent.objects.filter(detected_at__gte=charts.failover_window_start(now), kind__in=charts.FAILOVER_KINDS)
        .annotate(hour=TruncHour("detected_at"))
        .order_by()
        .values_list("hour", "kind")
        .annotate(n=Count("pk"))
    )
    return charts.failover_chart(list(rows), now=now)


def overview_url(request: HttpRequest, **changes: str | None) -> str:
    """The overview with the request's filters changed (``None`` drops one), on its first
    page and never as the fragment: what the filter links of a live refresh must point to."""
    params = request.GET.copy()
    for name in ("page", *NOT_IN_KEY):
        params.pop(name, None)
    for name, value in changes.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    query = params.urlencode()
    return reverse("home") + (f"?{query}" if query else "")


def overview_context(request: HttpRequest) -> dict[str, Any]:
    filters = TopologyFilter.from_request(request)
    counts = installation_counts(filters)
    page = topology_page(request, filters, counts["shown"])
    alerts = list(
        with_incidents(Alert.objects.filter(cleared_at__isnull=True))
        .select_related("server")
        .annotate(silenced_until=silenced_until())
        .order_by("-raised_at", "-id")[:BANNER_ALERTS]
    )
    events = with_durations(
        list(
            FailoverEvent.objects.select_related("server", "link", "from_peer", "to_peer").order_by(
                "-detected_at", "-id"
            )[:RECENT_EVENTS]
        )
    )
    now = timezone.now()
    return {
        "servers": with_cards([server_view(server) for server in page.object_list], request.user),
        "page": page,
        "filters": filters,
        "urls": {
            "all": overview_url(request, show=None),
            "problems": overview_url(request, show=SHOW_PROBLEMS),
            "clear_search": overview_url(request, q=None),
            "everything": overview_url(request, q=None, show=None),
        },
        "alerts": alerts,
        "more_alerts": max(counts["alerts"] - len(alerts), 0),
        "events": events,
        "counts": counts,
        "charts": [activity_chart(now), failover_chart(now)],
    }


def always(request: HttpRequest) -> bool:
    return True


@requires_permission(VIEW_DESKTOP)
@require_GET
@shared_fragment(wants_fragment)
def overview(request: HttpRequest) -> HttpResponse:
    return render_console(request, "console/overview.html", "console/_overview.html", overview_context(request))


@requires_permission(VIEW_DESKTOP)
@require_GET
@shared_fragment(always)  # one render per filters and event, whatever the number of watchers
def overview_partial(request: HttpRequest) -> HttpResponse:
    response = render(request, "console/_overview.html", overview_context(request))
    response["Cache-Control"] = "no-store"
    return response
