"""Read-only queries of the failover app (HackSoft style: services write, selectors read)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db.models import Count, OuterRef, Subquery
from django.utils import timezone

from common.times import iso_datetime
from failover.choices import Health, PeerConnection
from failover.models import Alert, Link, Peer, Server
from failover.services.alert_actions import active_silences
from sessions.choices import SessionState
from sessions.models import CollaborationSession

# The status snapshot always lists every session state, zeros included, so a client can
# index it without checking for missing keys.
SESSION_STATES: tuple[str, ...] = tuple(SessionState.values)


def _empty_counts() -> dict[str, int]:
    return dict.fromkeys(SESSION_STATES, 0)


def session_counts_by_server() -> dict[int, dict[str, int]]:
    """Sessions per server and state, in one ``GROUP BY`` query; missing states are zero."""
    counts: dict[int, dict[str, int]] = defaultdict(_empty_counts)
    rows = CollaborationSession.objects.order_by().values_list("server_id", "state").annotate(n=Count("pk"))
    for server_id, state, n in rows:
        counts[server_id][state] = n
    return counts


def is_empty(counts: dict[str, int]) -> bool:
    """No session queued, in transit or active: a drained server with these counts may stop."""
    return not any(n for state, n in counts.items() if state != SessionState.ENDED)


# The columns each part of the snapshot needs. The snapshot is built from ``.values()``
# rows, not model instances: with 1,000 servers it reads about 7,000 rows, and creating
# (and garbage-collecting) that many model objects was most of its time (issue 7, point 8).
SERVER_FIELDS = (
    "id",
    "name",
    "role",
    "health",
    "failed_at",
    "degraded_since",
    "degraded_reason",
    "drain_started_at",
    "drain_reason",
    "drain_deadline",
)
LINK_FIELDS = ("id", "server_id", "kind", "state", "epoch", "last_switchover_at")
PEER_FIELDS = (
    "id",
    "server_id",
    "name",
    "kind",
    "priority",
    "host",
    "port",
    "health",
    "connection",
    "in_maintenance",
    "icm_side",
    "last_probe_at",
    "last_latency_ms",
    "consecutive_failures",
    "consecutive_successes",
)
ALERT_FIELDS = (
    "id",
    "server_id",
    "server__name",
    "kind",
    "severity",
    "message",
    "raised_at",
    "acknowledged_at",
    "acknowledged_by_name",
    "acknowledge_note",
    "silenced_until",
)


def _display_state(row: dict[str, Any]) -> str:
    """``Peer.display_state`` for a row: connected / standby / down / maintenance.

    Keep in step with the model's property (tests/api/test_status.py checks the states
    the snapshot shows).
    """
    if row["in_maintenance"]:
        return "maintenance"
    if row["connection"] == PeerConnection.CONNECTED:
        return "connected"
    if row["health"] == Health.DOWN:
        return "down"
    return "standby"


def _peer_entry(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "kind": row["kind"],
        "priority": row["priority"],
        "host": row["host"],
        "port": row["port"],
        "health": row["health"],
        "connection": row["connection"],
        "display_state": _display_state(row),
        "in_maintenance": row["in_maintenance"],
        "icm_side": row["icm_side"],
        "last_probe_at": iso_datetime(row["last_probe_at"]),
        "last_latency_ms": row["last_latency_ms"],
        "consecutive_failures": row["consecutive_failures"],
        "consecutive_successes": row["consecutive_successes"],
    }


def _link_entry(link: dict[str, Any], peers: list[dict[str, Any]]) -> dict[str, Any]:
    # The database allows at most one connected peer per pair, so "first" is "the".
    active = next((peer for peer in peers if peer["connection"] == PeerConnection.CONNECTED), None)
    return {
        "id": link["id"],
        "kind": link["kind"],
        "state": link["state"],
        "epoch": link["epoch"],
        "last_switchover_at": iso_datetime(link["last_switchover_at"]),
        "active_peer": {"id": active["id"], "name": active["name"]} if active else None,
        "peers": [_peer_entry(peer) for peer in peers],
    }


def _server_entry(
    server: dict[str, Any],
    links: list[dict[str, Any]],
    peers_by_kind: dict[str, list[dict[str, Any]]],
    counts: dict[str, int],
) -> dict[str, Any]:
    return {
        "id": server["id"],
        "name": server["name"],
        "role": server["role"],
        "health": server["health"],
        "failed_at": iso_datetime(server["failed_at"]),
        "degraded_since": iso_datetime(server["degraded_since"]),
        "degraded_reason": server["degraded_reason"],
        "drain_started_at": iso_datetime(server["drain_started_at"]),
        "drain_reason": server["drain_reason"],
        "drain_deadline": iso_datetime(server["drain_deadline"]),
        "safe_to_restart": server["drain_started_at"] is not None and is_empty(counts),
        "links": [_link_entry(link, peers_by_kind.get(link["kind"], [])) for link in links],
        "session_counts": counts,
    }


def _alert_entry(alert: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": alert["id"],
        "server": alert["server_id"],
        "server_name": alert["server__name"],
        "kind": alert["kind"],
        "severity": alert["severity"],
        "message": alert["message"],
        "raised_at": iso_datetime(alert["raised_at"]),
        "acknowledged_at": iso_datetime(alert["acknowledged_at"]),
        "acknowledged_by": alert["acknowledged_by_name"],
        "acknowledge_note": alert["acknowledge_note"],
        "silenced_until": iso_datetime(alert["silenced_until"]),
    }


def status_snapshot() -> dict[str, Any]:
    """Everything the Administration desktop shows, as one plain JSON-able dict.

    Servers with their links (active peer, state, epoch) and peers' health, session counts
    by state per server and in total, and the open alerts. The same dict is the REST
    ``/api/v1/status/`` body and the first message of the status WebSocket, so it holds
    only JSON types (datetimes as ISO 8601 text).

    Five queries whatever the size of the installation: servers, links, peers, one
    aggregate for session counts and one for open alerts, each read as ``.values()`` rows
    (no model instances: see ``SERVER_FIELDS``). No transaction is taken: on SQLite it
    would take the write lock, and the live feed corrects any skew between the queries
    with its next message.
    """
    generated_at = timezone.now()
    servers = list(Server.objects.order_by("name").values(*SERVER_FIELDS))
    # Explicit orderings: the models' default ones join the server table for nothing.
    links_by_server: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for link in Link.objects.order_by("kind").values(*LINK_FIELDS):
        links_by_server[link["server_id"]].append(link)
    peers_by_server: dict[int, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for peer in Peer.objects.order_by("kind", "priority").values(*PEER_FIELDS):
        peers_by_server[peer["server_id"]][peer["kind"]].append(peer)
    counts = session_counts_by_server()
    no_peers: dict[str, list[dict[str, Any]]] = {}
    server_entries = [
        _server_entry(
            server,
            links_by_server.get(server["id"], []),
            peers_by_server.get(server["id"], no_peers),
            dict(counts[server["id"]]) if server["id"] in counts else _empty_counts(),
        )
        for server in servers
    ]

    totals = _empty_counts()
    for entry in server_entries:
        for state, n in entry["session_counts"].items():
            totals[state] += n

    in_force = active_silences(generated_at).filter(server_id=OuterRef("server_id")).order_by("-ends_at")
    alerts = (
        Alert.objects.filter(cleared_at__isnull=True)
        .annotate(silenced_until=Subquery(in_force.values("ends_at")[:1]))
        .order_by("-raised_at", "-id")
        .values(*ALERT_FIELDS)
    )
    return {
        "generated_at": iso_datetime(generated_at),
        "servers": server_entries,
        "session_counts": totals,
        "alerts": [_alert_entry(alert) for alert in alerts],
    }
