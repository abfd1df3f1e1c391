"""Incidents over the API: ``GET /api/v1/incidents/`` and ``/api/v1/incidents/{id}/``.

Read-only, for view_desktop, like the incident page: the list is the failover events caused by a
failure (``server``, ``kind``, ``from``/``to`` filters), the detail is the whole report
(console/incidents.py): the event, the sessions open at that moment and what became of
each, the alerts raised and the administrators' actions that followed.
"""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from common.api_conventions import MAX_ID
from common.api_exports import DATE_RANGE_PARAMETERS, within_requested_dates
from common.api_views import ReadOnlyResourceViewSet
from common.permissions import requires
from common.roles import VIEW_DESKTOP
from console.incidents import OUTCOMES, incident_report, incident_rows
from failover.api.notifications import NotificationDeliverySerializer
from failover.api.serializers import AlertSerializer, AuditEntrySerializer, FailoverEventSerializer
from failover.choices import FailoverKind
from failover.models import FailoverEvent
from sessions.choices import EndReason, SessionState


class IncidentFilterSerializer(serializers.Serializer):
    server = serializers.IntegerField(
        source="server_id", required=False, min_value=1, max_value=MAX_ID, help_text="Server id."
    )
    kind = serializers.ChoiceField(
        choices=[
            (k, FailoverKind(k).label)
            for k in (FailoverKind.AUTOMATIC, FailoverKind.LINK_DOWN, FailoverKind.SERVER_FAILED)
        ],
        required=False,
    )


class IncidentSessionSerializer(serializers.Serializer):
    """One session open at the incident: as it was then, and what became of it."""

    session = serializers.UUIDField(source="session.pk")
    caller_name = serializers.CharField(source="session.caller_name")
    state_at_incident = serializers.ChoiceField(source="snapshot.state", choices=SessionState.choices)
    agent_at_incident = serializers.CharField(source="snapshot.agent_name", allow_blank=True)
    route_epoch_at_incident = serializers.IntegerField(source="snapshot.route_epoch", allow_null=True)
    outcome = serializers.ChoiceField(
        choices=OUTCOMES, help_text="kept: still where it was; rerouted: adopted, routed again or requeued; ended."
    )
    outcome_detail = serializers.CharField(source="detail", help_text="What became of it, in words.")
    state = serializers.ChoiceField(source="session.state", choices=SessionState.choices, help_text="Its state now.")
    server = serializers.CharField(source="session.server.name", help_text="Its server now.")
    end_reason = serializers.ChoiceField(source="session.end_reason", choices=EndReason.choices, allow_blank=True)
    ended_at = serializers.DateTimeField(source="session.ended_at", allow_null=True)


class IncidentReportSerializer(serializers.Serializer):
    incident = FailoverEventSerializer(source="event")
    resolved_at = serializers.DateTimeField(
        source="resolved_by.detected_at", allow_null=True, default=None, help_text="Server recovered or link restored."
    )
    next_incident = serializers.IntegerField(
        source="next_incident.pk", allow_null=True, default=None, help_text="The next incident on the same server."
    )
    window_ends_at = serializers.DateTimeField(
        help_text="The administrators' actions listed are those until this moment (next incident, resolution or 24 h)."
    )
    sessions = IncidentSessionSerializer(many=True)
    alerts = AlertSerializer(many=True)
    notifications = NotificationDeliverySerializer(
        many=True, help_text="The deliveries of those alerts to the notification channels (raised and cleared)."
    )
    admin_actions = AuditEntrySerializer(many=True)


@extend_schema_view(
    list=extend_schema(parameters=[IncidentFilterSerializer, *DATE_RANGE_PARAMETERS]),
    retrieve=extend_schema(responses=IncidentReportSerializer),
)
class IncidentViewSet(ReadOnlyResourceViewSet):
    """Failovers and server failures caused by a failure, newest first; each one's report."""

    serializer_class = FailoverEventSerializer
    filter_serializer_class = IncidentFilterSerializer

    def get_queryset(self) -> QuerySet[FailoverEvent]:
        return incident_rows()

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = super().filter_queryset(queryset)
        if self.action != "list":
            return queryset
        return within_requested_dates(queryset, self.request.query_params, "detected_at")

    @requires(VIEW_DESKTOP)
    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(IncidentReportSerializer(incident_report(self.get_object())).data)
