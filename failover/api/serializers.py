"""Serializers of the failover API: resources, the status snapshot, query filters, actions."""

from __future__ import annotations

from typing import Any

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from common.api_conventions import MAX_ID
from failover.choices import (
    AlertKind,
    AlertSeverity,
    AuditAction,
    Detection,
    FailoverKind,
    LinkState,
    PeerKind,
)
from failover.models import Alert, AuditEntry, FailoverEvent, Link, Peer, Policy, Server, ServerSilence
from failover.models.health import PROBE_FIELDS
from failover.services.alert_actions import SILENCE_MAX_MINUTES, SILENCE_MIN_MINUTES
from failover.services.policy import EDITABLE_FIELDS as POLICY_EDITABLE_FIELDS

# The values of ``Peer.display_state`` (a property, so it has no TextChoices of its own).
PEER_DISPLAY_STATES = [
    ("connected", "Connected"),
    ("standby", "Standby"),
    ("down", "Down"),
    ("maintenance", "Maintenance"),
]


# --- Resources ---------------------------------------------------------------------------


class ServerSerializer(serializers.ModelSerializer):
    # A string, not a "uri": the field may be blank (no URL set), which a uri format refuses.
    base_url = serializers.CharField(
        read_only=True, help_text="Where this server's process answers /healthz; empty when not set."
    )
    silenced_until = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        default=None,
        help_text="Its alerts notify no one until then (a maintenance window); null when not silenced.",
    )

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
            "degraded_since",
            "degraded_reason",
            "drain_started_at",
            "drain_reason",
            "drain_deadline",
            "last_probe_at",
            "last_latency_ms",
            "last_error",
            "consecutive_successes",
            "consecutive_failures",
            "created_at",
            "silenced_until",
        ]
        read_only_fields = fields


class AlertSerializer(serializers.ModelSerializer):
    server_name = serializers.CharField(source="server.name", read_only=True)
    silenced = serializers.BooleanField(
        read_only=True, default=False, help_text="Its server is in a maintenance window now: it notifies no one."
    )

    class Meta:
        model = Alert
        fields = [
            "id",
            "server",
            "server_name",
            "link",
            "kind",
            "severity",
            "message",
            "raised_at",
            "cleared_at",
            "clear_reason",
            "acknowledged_at",
            "acknowledged_by_name",
            "acknowledge_note",
            "silenced",
        ]
        read_only_fields = fields


class ServerSilenceSerializer(serializers.ModelSerializer):
    until = serializers.DateTimeField(read_only=True, help_text="When it stops silencing (or stopped, if ended early).")

    class Meta:
        model = ServerSilence
        fields = [
            "id",
            "server",
            "starts_at",
            "ends_at",
            "until",
            "reason",
            "created_by_name",
            "ended_at",
            "ended_by_name",
            "end_note",
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
            *PROBE_FIELDS,
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
    # Declared: a read-only model field would not say that blank (not a failure) is a value.
    detection = serializers.ChoiceField(
        choices=Detection.choices,
        allow_blank=True,
        read_only=True,
        help_text="How the failure was noticed; blank for changes that were not failures.",
    )
    detected_at_once = serializers.BooleanField(
        read_only=True,
        help_text="Noticed the moment it happened (a reset or refused connection): there is no "
        "detection time, and detection_seconds is null.",
    )
    detection_seconds = serializers.FloatField(
        read_only=True, allow_null=True, help_text="Seconds from the failure's start to its detection, when measured."
    )
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
            "detection",
            "detected_at_once",
            "detection_seconds",
            "switchover_seconds",
            "failure",
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


# --- Query filters (validated, so a bad value is a 400, never a 500) ------------------------
# Each field's ``source`` is the ORM lookup it filters on.


class PeerFilterSerializer(serializers.Serializer):
    server = serializers.IntegerField(
        source="server_id", required=False, min_value=1, max_value=MAX_ID, help_text="Server id."
    )
    kind = serializers.ChoiceField(choices=PeerKind.choices, required=False)


class LinkFilterSerializer(serializers.Serializer):
    server = serializers.IntegerField(
        source="server_id", required=False, min_value=1, max_value=MAX_ID, help_text="Server id."
    )
    kind = serializers.ChoiceField(choices=PeerKind.choices, required=False)
    state = serializers.ChoiceField(choices=LinkState.choices, required=False)


class FailoverEventFilterSerializer(serializers.Serializer):
    server = serializers.IntegerField(
        source="server_id", required=False, min_value=1, max_value=MAX_ID, help_text="Server id."
    )
    link = serializers.IntegerField(
        source="link_id", required=False, min_value=1, max_value=MAX_ID, help_text="Link id."
    )
    kind = serializers.ChoiceField(choices=FailoverKind.choices, required=False)


class AuditEntryFilterSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=AuditAction.choices, required=False)
    object_type = serializers.CharField(required=False, max_length=64, help_text="For example failover.link.")
    object_id = serializers.CharField(required=False, max_length=64)
    actor_name = serializers.CharField(required=False, max_length=150, help_text="For example user:admin.")


class AlertFilterSerializer(serializers.Serializer):
    server = serializers.IntegerField(
        source="server_id", required=False, min_value=1, max_value=MAX_ID, help_text="Server id."
    )
    kind = serializers.ChoiceField(choices=AlertKind.choices, required=False)
    severity = serializers.ChoiceField(choices=AlertSeverity.choices, required=False)
    open = serializers.BooleanField(
        source="cleared_at__isnull", required=False, help_text="true: open alerts only; false: cleared ones only."
    )


# --- Actions: request bodies and results ----------------------------------------------------


class AcknowledgeRequestSerializer(serializers.Serializer):
    note = serializers.CharField(
        max_length=300, help_text="What you are doing about it; shown on the overview and kept in the audit history."
    )


class SilenceRequestSerializer(serializers.Serializer):
    minutes = serializers.IntegerField(
        min_value=SILENCE_MIN_MINUTES,
        max_value=SILENCE_MAX_MINUTES,
        help_text="From now, for this many minutes (at most 7 days); it ends by itself.",
    )
    reason = serializers.CharField(max_length=300, help_text="The maintenance; kept in the audit history.")


class UnsilenceRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=300, help_text="Why it ends early; kept in the audit history.")


# What a switchover did; a stale request is a 409, so it never appears in a 200.
SWITCHOVER_OUTCOMES = [
    ("switched", "Switched to the other peer"),
    ("restored", "A down link was connected"),
    ("down", "No eligible peer left: the link is down"),
    ("unchanged", "Nothing to do: the requested peer was already connected"),
]


class SwitchoverRequestSerializer(serializers.Serializer):
    """A manual switchover. The view passes the link as ``context["link"]``."""

    reason = serializers.CharField(max_length=300, help_text="Why; kept in the audit history and the event.")
    to_peer = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="Peer id to connect; default: the pair's other peer."
    )
    expected_epoch = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=MAX_ID,
        help_text="The link's epoch as the caller last saw it; if it has moved since, nothing is done (409).",
    )

    def validate_to_peer(self, value: int) -> int:
        link: Link = self.context["link"]
        if not link.peers().filter(pk=value).exists():
            raise serializers.ValidationError(f"Peer {value} is not part of this link.")
        return value


class SwitchoverResultSerializer(LinkSerializer):
    """The link after the request, and what the request did to it."""

    outcome = serializers.ChoiceField(choices=SWITCHOVER_OUTCOMES, read_only=True)
    event = serializers.IntegerField(
        source="failover_event_id", read_only=True, allow_null=True, help_text="The failover event written, if any."
    )

    class Meta(LinkSerializer.Meta):
        fields = [*LinkSerializer.Meta.fields, "outcome", "event"]
        read_only_fields = fields


class MaintenanceRequestSerializer(serializers.Serializer):
    on = serializers.BooleanField(help_text="true: drain the peer and keep it out; false: release it.")
    reason = serializers.CharField(max_length=300, help_text="Why; kept in the audit history.")


class DrainRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=300, help_text="Why; kept in the audit history and shown to its agents.")
    deadline_minutes = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=24 * 60,
        help_text="Sessions still open this many minutes from now end with server_maintenance; omit for no deadline.",
    )


class UndrainRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=300, help_text="Why; kept in the audit history.")


class PeerMaintenanceResultSerializer(PeerSerializer):
    """The peer after the request, and the switchover its link made because of it."""

    switchover = SwitchoverResultSerializer(
        read_only=True,
        allow_null=True,
        help_text="Draining a connected peer switches its link away (or takes it down); releasing a peer "
        "reconnects a down link. Null when the link did not change.",
    )

    class Meta(PeerSerializer.Meta):
        fields = [*PeerSerializer.Meta.fields, "switchover"]
        read_only_fields = fields


def _model_bound_messages(model: type[models.Model]) -> dict[str, dict[str, Any]]:
    """DRF turns a model field's ``MinValueValidator`` and ``MaxValueValidator`` into its own
    ``min_value`` and ``max_value`` checks with its own words; keep the model's message
    where it says why (the server thresholds)."""
    extra: dict[str, dict[str, Any]] = {}
    for field in model._meta.concrete_fields:
        for validator in field.validators:
            for kind, key in ((MinValueValidator, "min_value"), (MaxValueValidator, "max_value")):
                if isinstance(validator, kind) and validator.message != kind.message:
                    extra.setdefault(field.name, {"error_messages": {}})["error_messages"][key] = validator.message
    return extra


class PolicySerializer(serializers.ModelSerializer):
    """The failover policy; its validators are the model's, so the API and the admin agree."""

    class Meta:
        model = Policy
        fields = [*POLICY_EDITABLE_FIELDS, "updated_at"]
        read_only_fields = ["updated_at"]
        extra_kwargs = _model_bound_messages(Policy)


class PolicyUpdateSerializer(PolicySerializer):
    """A policy change: any of the policy's fields, plus the reason, which is required."""

    reason = serializers.CharField(
        max_length=300, write_only=True, help_text="Required, even in a PATCH: why; kept in the audit history."
    )

    class Meta(PolicySerializer.Meta):
        fields = [*PolicySerializer.Meta.fields, "reason"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # DRF ignores unknown keys; a script's typo would then "succeed" and change nothing.
        unknown = sorted(set(self.initial_data) - set(self.fields))
        read_only = sorted(name for name in self.initial_data if name in self.fields and self.fields[name].read_only)
        if unknown or read_only:
            errors = {name: ["Not a policy field."] for name in unknown}
            errors.update({name: ["This field is read-only."] for name in read_only})
            raise serializers.ValidationError(errors)
        return attrs
