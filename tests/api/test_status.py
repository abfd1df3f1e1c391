"""GET /api/v1/status/: one snapshot of the whole installation, in a constant number of queries."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from console.api import StatusSnapshotSerializer
from console.selectors import status_snapshot
from failover.choices import AlertKind, AlertSeverity, IcmSide, PeerKind, PeerPriority
from failover.models import Peer
from sessions.choices import EndReason, SessionState
from tests.factories import (
    AgentFactory,
    AlertFactory,
    PeerFactory,
    ServerFactory,
    SessionFactory,
    peer_mark_connected,
)

pytestmark = pytest.mark.django_db


def _build_server(name: str, *, agent_name: str) -> dict[str, object]:
    """A server with both peer pairs (its primary Media Blender connected), an agent,
    one session in each state and an open alert."""
    server = ServerFactory(name=name)
    peers = {
        (kind, priority): PeerFactory(server=server, kind=kind, priority=priority, name=f"{name}-{kind[:2]}{priority}")
        for kind in PeerKind.values
        for priority in PeerPriority.values
    }
    mb_primary = peer_mark_connected(peers[PeerKind.MEDIA_BLENDER, PeerPriority.PRIMARY], epoch=3)
    agent = AgentFactory(user__username=agent_name, server=server)
    SessionFactory(server=server)
    SessionFactory(server=server, state=SessionState.IN_TRANSIT, agent=agent)
    SessionFactory(server=server, state=SessionState.ACTIVE, agent=agent)
    SessionFactory(server=server, state=SessionState.ENDED, end_reason=EndReason.AGENT_ENDED, ended_at=timezone.now())
    alert = AlertFactory(server=server, kind=AlertKind.CONFIG_OUT_OF_SYNC, message="Run Verify and Sync")
    return {"server": server, "peers": peers, "mb_primary": mb_primary, "agent": agent, "alert": alert}


def _server_entry(snapshot: dict, name: str) -> dict:
    return next(entry for entry in snapshot["servers"] if entry["name"] == name)


def _link_entry(server_entry: dict, kind: str) -> dict:
    return next(link for link in server_entry["links"] if link["kind"] == kind)


def test_the_snapshot_lists_each_server_with_its_links_peers_and_session_counts():
    built = _build_server("routing-a", agent_name="anna")
    SessionFactory(server=built["server"])  # a second queued session

    entry = _server_entry(status_snapshot(), "routing-a")

    assert set(entry) == {
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
        "safe_to_restart",
        "links",
        "session_counts",
    }
    assert entry["id"] == built["server"].id
    assert entry["role"] == "routing"
    assert entry["failed_at"] is None
    assert entry["degraded_since"] is None
    assert sorted(link["kind"] for link in entry["links"]) == sorted(PeerKind.values)
    assert entry["session_counts"] == {"queued": 2, "in_transit": 1, "active": 1, "ended": 1}


def test_the_snapshot_names_the_connected_peer_of_each_link():
    built = _build_server("routing-a", agent_name="anna")

    entry = _server_entry(status_snapshot(), "routing-a")
    media_blender = _link_entry(entry, PeerKind.MEDIA_BLENDER)
    admin_workstation = _link_entry(entry, PeerKind.ADMIN_WORKSTATION)

    assert media_blender["active_peer"] == {"id": built["mb_primary"].id, "name": built["mb_primary"].name}
    assert media_blender["state"] == "connected"
    assert media_blender["epoch"] == 3
    assert media_blender["last_switchover_at"].endswith("Z")
    assert admin_workstation["active_peer"] is None
    assert admin_workstation["state"] == "down"


def test_the_snapshot_shows_each_peers_health_and_display_state():
    built = _build_server("routing-a", agent_name="anna")
    secondary = built["peers"][PeerKind.MEDIA_BLENDER, PeerPriority.SECONDARY]
    Peer.objects.filter(pk=secondary.pk).update(
        in_maintenance=True, icm_side=IcmSide.B, last_latency_ms=1.5, consecutive_successes=4
    )

    link = _link_entry(_server_entry(status_snapshot(), "routing-a"), PeerKind.MEDIA_BLENDER)

    assert [peer["priority"] for peer in link["peers"]] == [1, 2]
    primary_entry, secondary_entry = link["peers"]
    assert primary_entry["connection"] == "connected"
    assert primary_entry["display_state"] == "connected"
    assert secondary_entry == {
        "id": secondary.id,
        "name": secondary.name,
        "kind": "media_blender",
        "priority": 2,
        "host": secondary.host,
        "port": secondary.port,
        "health": "unknown",
        "connection": "standby",
        "display_state": "maintenance",
        "in_maintenance": True,
        "icm_side": "B",
        "last_probe_at": None,
        "last_latency_ms": 1.5,
        "consecutive_failures": 0,
        "consecutive_successes": 4,
    }


def test_the_snapshot_totals_session_counts_over_all_servers():
    _build_server("routing-a", agent_name="anna")
    _build_server("routing-b", agent_name="bob")

    snapshot = status_snapshot()

    assert snapshot["session_counts"] == {"queued": 2, "in_transit": 2, "active": 2, "ended": 2}


def test_a_server_without_sessions_counts_zero_in_every_state():
    ServerFactory(name="idle")

    snapshot = status_snapshot()

    assert _server_entry(snapshot, "idle")["session_counts"] == {"queued": 0, "in_transit": 0, "active": 0, "ended": 0}
    assert snapshot["session_counts"] == {"queued": 0, "in_transit": 0, "active": 0, "ended": 0}


def test_the_snapshot_lists_open_alerts_only():
    built = _build_server("routing-a", agent_name="anna")
    AlertFactory(server=built["server"], kind=AlertKind.LINK_DOWN, cleared_at=timezone.now())
    alert = built["alert"]

    alerts = status_snapshot()["alerts"]

    assert len(alerts) == 1
    assert alerts[0] == {
        "id": alert.id,
        "server": built["server"].id,
        "server_name": "routing-a",
        "kind": "config_out_of_sync",
        "severity": AlertSeverity.WARNING.value,
        "message": "Run Verify and Sync",
        "raised_at": alerts[0]["raised_at"],
        "acknowledged_at": None,
        "acknowledged_by": "",
        "acknowledge_note": "",
        "silenced_until": None,
    }
    assert alerts[0]["raised_at"].endswith("Z")


def test_the_snapshot_is_plain_json_for_the_websocket_feed():
    _build_server("routing-a", agent_name="anna")
    snapshot = status_snapshot()

    assert json.loads(json.dumps(snapshot)) == snapshot


def test_the_snapshot_matches_its_documented_schema():
    _build_server("routing-a", agent_name="anna")

    serializer = StatusSnapshotSerializer(data=status_snapshot())

    assert serializer.is_valid(), serializer.errors


def test_the_snapshot_takes_the_same_number_of_queries_for_one_server_or_twenty(django_assert_num_queries):
    _build_server("server-00", agent_name="agent-00")
    with CaptureQueriesContext(connection) as one_server:
        assert len(status_snapshot()["servers"]) == 1

    for n in range(1, 20):
        _build_server(f"server-{n:02d}", agent_name=f"agent-{n:02d}")
    with CaptureQueriesContext(connection) as twenty_servers:
        snapshot = status_snapshot()

    assert len(snapshot["servers"]) == 20
    assert len(snapshot["alerts"]) == 20
    assert len(twenty_servers) == len(one_server)
    # servers, links, peers, session counts, alerts
    with django_assert_num_queries(5):
        status_snapshot()


def test_the_status_endpoint_returns_the_snapshot(admin_api):
    _build_server("routing-a", agent_name="anna")

    response = admin_api.get("/api/v1/status/")

    assert response.status_code == 200
    body = response.json()
    expected = status_snapshot()
    served_at = datetime.fromisoformat(body.pop("generated_at"))
    assert served_at <= datetime.fromisoformat(expected.pop("generated_at"))
    assert body == expected
