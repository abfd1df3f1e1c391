"""The status snapshot over HTTP: ``GET /api/v1/status/``, the same picture the status
WebSocket sends first (``console.selectors.status_snapshot``), with its schema."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api_schema import ApiSchema
from common.permissions import requires
from common.roles import VIEW_DESKTOP
from console.selectors import status_snapshot
from failover.api.serializers import PEER_DISPLAY_STATES, PeerRefSerializer
from failover.choices import (
    AlertKind,
    AlertSeverity,
    Health,
    IcmSide,
    LinkState,
    PeerConnection,
    PeerKind,
    PeerPriority,
    ServerRole,
)


class SessionCountsSerializer(serializers.Serializer):
    """Sessions by state; every state is present, zeros included."""

    queued = serializers.IntegerField()
    in_transit = serializers.IntegerField()
    active = serializers.IntegerField()
    ended = serializers.IntegerField()


class StatusPeerSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=PeerKind.choices)
    priority = serializers.ChoiceField(choices=PeerPriority.choices)
    host = serializers.CharField()
    port = serializers.IntegerField()
    health = serializers.ChoiceField(choices=Health.choices)
    connection = serializers.ChoiceField(choices=PeerConnection.choices)
    display_state = serializers.ChoiceField(choices=PEER_DISPLAY_STATES)
    in_maintenance = serializers.BooleanField()
    icm_side = serializers.ChoiceField(choices=IcmSide.choices, allow_blank=True)
    last_probe_at = serializers.DateTimeField(allow_null=True)
    last_latency_ms = serializers.FloatField(allow_null=True)
    consecutive_failures = serializers.IntegerField()
    consecutive_successes = serializers.IntegerField()


class StatusLinkSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=PeerKind.choices)
    state = serializers.ChoiceField(choices=LinkState.choices)
    epoch = serializers.IntegerField(help_text="Fencing epoch: rises by one on every switchover.")
    last_switchover_at = serializers.DateTimeField(allow_null=True)
    active_peer = PeerRefSerializer(allow_null=True, help_text="The connected peer of the pair, if any.")
    peers = StatusPeerSerializer(many=True)


class StatusServerSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    role = serializers.ChoiceField(choices=ServerRole.choices)
    health = serializers.ChoiceField(choices=Health.choices)
    failed_at = serializers.DateTimeField(allow_null=True)
    degraded_since = serializers.DateTimeField(
        allow_null=True,
        help_text="Up but slow since then (its node answers late or keeps requests waiting); "
        "new callers go to other healthy servers first. Null when not degraded.",
    )
    degraded_reason = serializers.CharField(allow_blank=True)
    drain_started_at = serializers.DateTimeField(
        allow_null=True, help_text="Draining (planned maintenance) since then: it takes no new sessions."
    )
    drain_reason = serializers.CharField(allow_blank=True)
    drain_deadline = serializers.DateTimeField(
        allow_null=True, help_text="Sessions still open then end with server_maintenance; null: no deadline."
    )
    safe_to_restart = serializers.BooleanField(
        help_text="Draining and empty (no session queued, in transit or active): it may be stopped now."
    )
    links = StatusLinkSerializer(many=True)
    session_counts = SessionCountsSerializer()


class StatusAlertSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    server = serializers.IntegerField(help_text="The server's id.")
    server_name = serializers.CharField()
    kind = serializers.ChoiceField(choices=AlertKind.choices)
    severity = serializers.ChoiceField(choices=AlertSeverity.choices)
    message = serializers.CharField()
    raised_at = serializers.DateTimeField()
    acknowledged_at = serializers.DateTimeField(allow_null=True, help_text="Null while nobody has acknowledged it.")
    acknowledged_by = serializers.CharField(
        allow_blank=True, help_text="For example user:admin; blank if not acknowledged."
    )
    acknowledge_note = serializers.CharField(allow_blank=True)
    silenced_until = serializers.DateTimeField(
        allow_null=True, help_text="Its server is in a maintenance window until then: it notifies no one."
    )


class StatusSnapshotSerializer(serializers.Serializer):
    """One consistent picture for the Administration desktop; the WebSocket sends the same."""

    generated_at = serializers.DateTimeField()
    servers = StatusServerSerializer(many=True)
    session_counts = SessionCountsSerializer(help_text="Totals over all servers.")
    alerts = StatusAlertSerializer(many=True, help_text="Open alerts, newest first.")


class StatusView(APIView):
    """The whole installation in one snapshot (the same one the status WebSocket sends first)."""

    schema = ApiSchema()

    @extend_schema(
        summary="Snapshot of servers, links, peers, session counts and open alerts",
        responses=StatusSnapshotSerializer,
    )
    @requires(VIEW_DESKTOP)
    def get(self, request: Request) -> Response:
        return Response(status_snapshot())
