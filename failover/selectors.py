"""Read-only queries of the failover app (HackSoft style: services write, selectors read)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from django.db.models import Count, Prefetch
from django.utils import timezone

from failover.models import Alert, Link, Peer, Server
from sessions.choices import SessionState
from sessions.models import CollaborationSession

# The status snapshot always lists every session state, zeros included, so a client can
# index it without checking for missing keys.
SESSION_STATES: tuple[str, ...] = tuple(SessionState.values)


def iso_datetime(value: datetime | None) -> str | None:
    """The same text DRF's DateTimeField renders (UTC, ``Z`` suffix), so snapshot and REST agree."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _empty_counts() -> dict[str, int]:
    return dict.fromkeys(SESSION_STATES, 0)


def session_counts_by_server() -> dict[int, dict[str, int]]:
    """Sessions per server and state, in one ``GROUP BY`` query; missing states are zero."""
    counts: dict[int, dict[str, int]] = defaultdict(_empty_counts)
    rows = CollaborationSession.objects.order_by().values_list("server_id", "state").annotate(n=Count("pk"))
    for server_id, state, n in rows:
        counts[server_id][state] = n
    return counts


def _peer_entry(peer: Peer) -> dict[str, Any]:
    return {
        "id": peer.id,
        "name": peer.name,
        "kind": peer.kind,
        "priority": peer.priority,
        "host": peer.host,
        "port": peer.port,
        "health": peer.health,
        "connection": peer.connection,
        "display_state": peer.display_state,
        "in_maintenance": peer.in_maintenance,
        "icm_side": peer.icm_side,
        "last_probe_at": iso_datetime(peer.last_probe_at),
        "last_latency_ms": peer.last_latency_ms,
        "consecutive_failures": peer.consecutive_failures,
        "consecutive_successes": peer.consecutive_successes,
    }


def _link_entry(link: Link, peers: list[Peer]) -> dict[str, Any]:
    # The database allows at most one connected peer per pair, so "first" is "the".
    active = next((peer for peer in peers if peer.is_connected), None)
    return {
        "id": link.id,
        "kind": link.kind,
        "state": link.state,
        "epoch": link.epoch,
        "last_switchover_at": iso_datetime(link.last_switchover_at),
        "active_peer": {"id": active.id, "name": active.name} if active else None,
        "peers": [_peer_entry(peer) for peer in peers],
    }


def _server_entry(server: Server, counts: dict[str, int]) -> dict[str, Any]:
    peers_by_kind: dict[str, list[Peer]] = defaultdict(list)
    for peer in server.peers.all():  # prefetched, ordered by kind then priority
        peers_by_kind[peer.kind].append(peer)
    return {
        "id": server.id,
        "name": server.name,
        "role": server.role,
        "health": server.health,
        "failed_at": iso_datetime(server.failed_at),
        "links": [_link_entry(link, peers_by_kind[link.kind]) for link in server.links.all()],
        "session_counts": counts,
    }


def _alert_entry(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "server": alert.server_id,
        "server_name": alert.server.name,
        "kind": alert.kind,
        "severity": alert.severity,
        "message": alert.message,
        "raised_at": iso_datetime(alert.raised_at),
    }


def status_snapshot() -> dict[str, Any]:
    """Everything the Administration desktop shows, as one plain JSON-able dict.

    Servers with their links (active peer, state, epoch) and peers' health, session counts
    by state per server and in total, and the open alerts. The same dict is the REST
    ``/api/v1/status/`` body and the first message of the status WebSocket, so it holds
    only JSON types (datetimes as ISO 8601 text).

    Five queries whatever the size of the installation: servers, links, peers (the two
    prefetches), one aggregate for session counts and one for open alerts. No transaction
    is taken: on SQLite it would take the write lock, and the live feed corrects any skew
    between the queries with its next message.
    """
    generated_at = timezone.now()
    servers = Server.objects.order_by("name").prefetch_related(
        # Explicit orderings: the models' default ones join the server table for nothing.
        Prefetch("links", queryset=Link.objects.order_by("kind")),
        Prefetch("peers", queryset=Peer.objects.order_by("kind", "priority")),
    )
    counts = session_counts_by_server()
    server_entries = [_server_entry(server, dict(counts[server.id])) for server in servers]

    totals = _empty_counts()
    for entry in server_entries:
        for state, n in entry["session_counts"].items():
            totals[state] += n

    alerts = Alert.objects.filter(cleared_at__isnull=True).select_related("server").order_by("-raised_at", "-id")
    return {
        "generated_at": iso_datetime(generated_at),
        "servers": server_entries,
        "session_counts": totals,
        "alerts": [_alert_entry(alert) for alert in alerts],
    }
