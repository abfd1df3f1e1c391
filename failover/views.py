"""The Administration desktop's overview (``/``): topology, alerts, recent failovers, actions.

One fragment (``console/_overview.html``) renders the page and every live refresh
(``/partials/overview/``); ``static/console/overview.js`` re-fetches it on each event of
``/ws/status/``. The actions call the failover services (which audit and publish), and a
refused one comes back as a message on the page. Everything here is staff only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from failover.choices import LinkState, PeerKind
from failover.models import Alert, FailoverEvent, Link, Peer, Server
from failover.services.maintenance import peer_set_maintenance
from failover.services.switchover import SwitchoverRefused, link_switchover

RECENT_EVENTS = 20
REASON_MAX = 300

staff_only = staff_member_required(login_url="login")


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
    return render(request, "console/overview.html", overview_context())


@staff_only
@require_GET
def overview_partial(request: HttpRequest) -> HttpResponse:
    response = render(request, "console/_overview.html", overview_context())
    response["Cache-Control"] = "no-store"
    return response


def _reason(request: HttpRequest) -> str:
    return (request.POST.get("reason") or "").strip()[:REASON_MAX]


def _refusal_text(error: SwitchoverRefused) -> str:
    return " ".join(str(message) for message in error.messages)


def _back_home() -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("home"))


def _expected_epoch(request: HttpRequest) -> int | None:
    raw = request.POST.get("expected_epoch", "")
    return int(raw) if raw.isdigit() else None


@staff_only
@require_POST
def link_switchover_view(request: HttpRequest, link_id: int) -> HttpResponse:
    link = get_object_or_404(Link.objects.select_related("server"), pk=link_id)
    label = f"{link.server.name} {link.get_kind_display()} link"
    reason = _reason(request)
    if not reason:
        messages.error(request, f"Switch-over of the {label} not done: give a reason.")
        return _back_home()
    try:
        result = link_switchover(
            link_id=link.pk, actor=request.user, reason=reason, expected_epoch=_expected_epoch(request)
        )
    except SwitchoverRefused as error:
        messages.error(request, f"Switch-over of the {label} refused: {_refusal_text(error)}")
        return _back_home()
    if result.outcome == "stale":
        messages.warning(
            request,
            f"The {label} changed before your request arrived (now epoch {result.link.epoch}); "
            "nothing was done. Check its state and try again.",
        )
    elif result.changed and result.event is not None and result.event.to_peer_id:
        target = Peer.objects.values_list("name", flat=True).get(pk=result.event.to_peer_id)
        messages.success(request, f"The {label} switched over to {target} (epoch {result.link.epoch}).")
    else:
        messages.info(request, f"The {label} did not change.")
    return _back_home()


@staff_only
@require_POST
def peer_maintenance_view(request: HttpRequest, peer_id: int) -> HttpResponse:
    peer = get_object_or_404(Peer, pk=peer_id)
    on = request.POST.get("on") == "1"
    reason = _reason(request)
    verb = "Maintenance of" if on else "End of maintenance of"
    if not reason:
        messages.error(request, f"{verb} {peer.name} not done: give a reason.")
        return _back_home()
    try:
        result = peer_set_maintenance(peer_id=peer.pk, on=on, actor=request.user, reason=reason)
    except SwitchoverRefused as error:
        messages.error(request, f"{verb} {peer.name} refused: {_refusal_text(error)}")
        return _back_home()
    text = f"{peer.name} is in maintenance." if on else f"{peer.name} is out of maintenance."
    if result is not None and result.changed:
        text += f" Its link is now {result.link.get_state_display().lower()} (epoch {result.link.epoch})."
    messages.success(request, text)
    return _back_home()
