"""The Administration desktop's overview (``/``): topology, alerts, recent failovers.

One fragment (``console/_overview.html``) renders the page and every live refresh
(``/partials/overview/``, or ``/?fragment=1``); ``static/console/console.js`` re-fetches it
on each event of ``/ws/status/``. Staff only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from collabadmin.console import render_console, staff_only
from failover.choices import LinkState, PeerKind
from failover.models import Alert, FailoverEvent, Link, Peer, Server

RECENT_EVENTS = 20


@dataclass
class LinkView:
    link: Link
    peers: list[Peer]
    active: Peer | None = None
    target: Peer | None = None

    @property
    def busy(self) -> bool:
        return self.link.state == LinkState.SWITCHING


@dataclass
class ServerView:
    server: Server
    links: list[LinkView] = field(default_factory=list)


def topology() -> list[ServerView]:
    """Every server with its two links and their peers: three queries whatever the size."""
    servers = Server.objects.order_by("name").prefetch_related(
        Prefetch("links", queryset=Link.objects.order_by("kind")),
        Prefetch("peers", queryset=Peer.objects.order_by("kind", "priority")),
    )
    views = []
    for server in servers:
        by_kind: dict[str, list[Peer]] = {}
        for peer in server.peers.all():
            by_kind.setdefault(peer.kind, []).append(peer)
        entry = ServerView(server)
        # Media Blender first: the pair the sessions follow.
        for link in sorted(server.links.all(), key=lambda link: link.kind != PeerKind.MEDIA_BLENDER):
            peers = by_kind.get(link.kind, [])
            active = next((peer for peer in peers if peer.is_connected), None)
            # The peer the service switches to by default: the other one (the first when none is connected).
            target = next((peer for peer in peers if active is None or peer.pk != active.pk), None)
            entry.links.append(LinkView(link, peers, active, target))
        views.append(entry)
    return views


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def overview_context() -> dict[str, Any]:
    servers = topology()
    alerts = list(Alert.objects.filter(cleared_at__isnull=True).select_related("server").order_by("-raised_at", "-id"))
    events = list(
        FailoverEvent.objects.select_related("server", "link", "from_peer", "to_peer").order_by("-detected_at", "-id")[
            :RECENT_EVENTS
        ]
    )
    for event in events:
        event.detection_ms = _ms(event.detection_seconds)
        event.switchover_ms = _ms(event.switchover_seconds)
    links = [link for server in servers for link in server.links]
    return {
        "servers": servers,
        "alerts": alerts,
        "events": events,
        "counts": {
            "servers": len(servers),
            "servers_up": sum(1 for s in servers if s.server.health == "up"),
            "links": len(links),
            "links_connected": sum(1 for link in links if link.link.state == LinkState.CONNECTED),
        },
    }


@staff_only
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    return render_console(request, "console/overview.html", "console/_overview.html", overview_context())


@staff_only
@require_GET
def overview_partial(request: HttpRequest) -> HttpResponse:
    response = render(request, "console/_overview.html", overview_context())
    response["Cache-Control"] = "no-store"
    return response
