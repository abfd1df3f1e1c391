"""The notifications API: the channels (read only; configured in the Django admin) with
their test action, and the deliveries (read only), filtered by channel and state.

A channel's secret is never shown here: it is configuration, read in the admin."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from common.api_conventions import (
    CONFLICT,
    MAX_ID,
    NOT_ALLOWED,
    NOT_FOUND,
    VALIDATION_ERROR,
    Conflict,
    django_error_text,
)
from common.api_views import ReadOnlyResourceViewSet
from common.permissions import requires
from common.roles import MANAGE_NOTIFICATIONS
from failover.choices import NotificationEvent
from failover.models import NotificationChannel, NotificationDelivery
from failover.services.notifications import notification_test

DELIVERY_STATES = [("delivered", "Delivered"), ("pending", "Pending (retrying)"), ("failed", "Failed (given up)")]
STATE_LOOKUPS = {
    "delivered": {"delivered_at__isnull": False},
    "pending": {"delivered_at__isnull": True, "next_attempt_at__isnull": False},
    "failed": {"delivered_at__isnull": True, "next_attempt_at__isnull": True},
}


class NotificationChannelSerializer(serializers.ModelSerializer):
    # A string, not a "uri": an e-mail channel has none (blank), which a uri format refuses.
    url = serializers.CharField(read_only=True, help_text="Webhook: where it POSTs; blank for e-mail.")

    class Meta:
        model = NotificationChannel
        fields = ["id", "name", "kind", "enabled", "url", "email_to", "alert_kinds", "min_severity", "created_at"]
        read_only_fields = fields


class NotificationDeliverySerializer(serializers.ModelSerializer):
    channel_name = serializers.CharField(source="channel.name", read_only=True)
    state = serializers.ChoiceField(choices=DELIVERY_STATES, read_only=True)

    class Meta:
        model = NotificationDelivery
        fields = [
            "id",
            "delivery_id",
            "channel",
            "channel_name",
            "alert",
            "event",
            "state",
            "attempts",
            "last_error",
            "next_attempt_at",
            "delivered_at",
            "created_at",
        ]
        read_only_fields = fields


class NotificationDeliveryFilterSerializer(serializers.Serializer):
    channel = serializers.IntegerField(
        source="channel_id", required=False, min_value=1, max_value=MAX_ID, help_text="Channel id."
    )
    event = serializers.ChoiceField(choices=NotificationEvent.choices, required=False)
    state = serializers.ChoiceField(choices=DELIVERY_STATES, required=False)

    def validate(self, data: dict) -> dict:
        # "state" is not a column: it stands for the lookups that define it.
        if state := data.pop("state", None):
            data.update(STATE_LOOKUPS[state])
        return data


class NotificationTestRequestSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=300, help_text="Why you test it; kept in the audit history.")


@extend_schema_view(list=extend_schema(parameters=[NotificationDeliveryFilterSerializer]))
class NotificationDeliveryViewSet(ReadOnlyResourceViewSet):
    """Every notification sent or being sent, newest first: attempts, last error, delivered at."""

    serializer_class = NotificationDeliverySerializer
    filter_serializer_class = NotificationDeliveryFilterSerializer
    queryset = NotificationDelivery.objects.select_related("channel").order_by("-created_at", "-id")


class NotificationChannelViewSet(ReadOnlyResourceViewSet):
    """Where alerts are sent (configured in the Django admin)."""

    serializer_class = NotificationChannelSerializer
    queryset = NotificationChannel.objects.order_by("name")

    @extend_schema(
        summary="Send a test notification over the channel",
        request=NotificationTestRequestSerializer,
        responses={
            202: NotificationDeliverySerializer,
            400: VALIDATION_ERROR,
            403: NOT_ALLOWED,
            404: NOT_FOUND,
            409: CONFLICT,
        },
    )
    @requires(MANAGE_NOTIFICATIONS)
    @action(detail=True, methods=["post"])
    def test(self, request: Request, pk: str | None = None) -> Response:
        """Queue a test delivery (sent and retried like any other); audited with the note.
        409 when the channel is disabled."""
        channel = self.get_object()
        body = NotificationTestRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            delivery = notification_test(channel_id=channel.pk, actor=request.user, note=body.validated_data["note"])
        except ValidationError as refused:
            raise Conflict(django_error_text(refused)) from refused
        return Response(NotificationDeliverySerializer(delivery).data, status=202)
