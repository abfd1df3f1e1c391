"""Serializers of the failover API: read-only resources, the status snapshot, query filters."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from failover.choices import (
    AlertKind,
    AlertSeverity,
    AuditAction,
    FailoverKind,
    Health,
    IcmSide,
    LinkState,
    PeerConnection,
    PeerKind,
    PeerPriority,
    ServerRole,
)
from failover.models import AuditEntry, FailoverEvent, Link, Peer, Server

# The values of ``Peer.display_state`` (a property, so it has no TextChoices of its own).
PEER_DISPLAY_STATES = [
    ("connected", "Connected"),
    ("standby", "Standby"),
    ("down", "Down"),
    ("maintenance", "Maintenance"),
]


# --- Resources ---------------------------------------------------------------------------


class ServerSerializer(serializers.ModelSerializer):
    class Meta:
        model = Server
        fields = [
            "id",
            "name",
            "role",
            "description",
            "base_url",
            "health",
            "health_changed_at",
            "failed_at",
            "last_probe_at",
            "last_latency_ms",
            "last_error",
            "consecutive_successes",
            "consecutive_failures",
            "created_at",
        ]
        read_only_fields = fields


class PeerSerializer(serializers.ModelSerializer):
    server_name = serializers.CharField(source="server.name", read_only=True)
    display_state = serializers.ChoiceField(choices=PEER_DISPLAY_STATES, read_only=True)

    class Meta:
        model = Peer
        fields = [
            "id",
            "server",
            "server_name",
            "kind",
            "name",
            "priority",
            "host",
            "port",
            "connection",
            "connected_epoch",
            "connected_at",
            "display_state",
            "in_maintenance",
            "maintenance_reason",
            "maintenance_since",
            "icm_side",
            "health",
            "health_changed_at",
            "last_probe_at",
            "last_latency_ms",
            "last_error",
            "consecutive_successes",
            "consecutive_failures",
        ]
        read_only_fields = fields


class PeerRefSerializer(serializers.Serializer):
    """A peer named in passing: enough to show it and to fetch it."""

    id = serializers.IntegerField()
    name = serializers.CharField()


class LinkSerializer(serializers.ModelSerializer):
    """A server's link to its pair of peers of one kind, with the connected (active) peer."""

    server_name = serializers.CharField(source="server.name", read_only=True)
    active_peer = serializers.SerializerMethodField()

    class Meta:
        model = Link
        fields = [
            "id",
            "server",
            "server_name",
            "kind",
            "state",
            "epoch",
            "state_changed_at",
            "last_switchover_at",
            "active_peer",
        ]
        read_only_fields = fields

    # LinkViewSet annotates active_peer_id and active_peer_name: one query per page.
    @extend_schema_field(PeerRefSerializer(allow_null=True))
    def get_active_peer(self, link: Link) -> dict[str, object] | None:
        if link.active_peer_id is None:
            return None
        return {"id": link.active_peer_id, "name": link.active_peer_name}


class FailoverEventSerializer(serializers.ModelSerializer):
    server_name = serializers.CharField(source="server.name", read_only=True)
    from_peer_name = serializers.CharField(source="from_peer.name", read_only=True, allow_null=True, default=None)
    to_peer_name = serializers.CharField(source="to_peer.name", read_only=True, allow_null=True, default=None)
    actor = serializers.CharField(source="actor.get_username", read_only=True, allow_null=True, default=None)
    detection_seconds = serializers.FloatField(read_only=True, allow_null=True)
    switchover_seconds = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = FailoverEvent
        fields = [
            "id",
            "server",
            "server_name",
            "link",
            "kind",
            "from_peer",
            "from_peer_name",
            "to_peer",
            "to_peer_name",
            "epoch",
            "reason",
            "actor",
            "failed_at",
            "detected_at",
            "completed_at",
            "detection_seconds",
            "switchover_seconds",
        ]
        read_only_fields = fields


class AuditEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = [
            "id",
            "created_at",
            "actor",
            "actor_name",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "reason",
            "before",
            "after",
        ]
        read_only_fields = fields


# --- The status snapshot (documents ``failover.selectors.status_snapshot``) -----------------


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


class StatusSnapshotSerializer(serializers.Serializer):
    """One consistent picture for the Administration desktop; the WebSocket sends the same."""

    generated_at = serializers.DateTimeField()
    servers = StatusServerSerializer(many=True)
    session_counts = SessionCountsSerializer(help_text="Totals over all servers.")
    alerts = StatusAlertSerializer(many=True, help_text="Open alerts, newest first.")


# --- Query filters (validated, so a bad value is a 400, never a 500) ------------------------
# Each field's ``source`` is the ORM lookup it filters on.


class PeerFilterSerializer(serializers.Serializer):
    server = serializers.IntegerField(source="server_id", required=False, min_value=1, help_text="Server id.")
    kind = serializers.ChoiceField(choices=PeerKind.choices, required=False)


class LinkFilterSerializer(serializers.Serializer):
    server = serializers.IntegerField(source="server_id", required=False, min_value=1, help_text="Server id.")
    kind = serializers.ChoiceField(choices=PeerKind.choices, required=False)
    state = serializers.ChoiceField(choices=LinkState.choices, required=False)


class FailoverEventFilterSerializer(serializers.Serializer):
    server = serializers.IntegerField(source="server_id", required=False, min_value=1, help_text="Server id.")
    link = serializers.IntegerField(source="link_id", required=False, min_value=1, help_text="Link id.")
    kind = serializers.ChoiceField(choices=FailoverKind.choices, required=False)


class AuditEntryFilterSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=AuditAction.choices, required=False)
    object_type = serializers.CharField(required=False, max_length=64, help_text="For example failover.link.")
    object_id = serializers.CharField(required=False, max_length=64)
    actor_name = serializers.CharField(required=False, max_length=150, help_text="For example user:admin.")
