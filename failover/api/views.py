"""The administrators' console API: status, servers, alerts, peers, links, events, audit, policy.

Views stay thin: querysets, permissions and the HTTP mapping here, reading logic in
``console.selectors``, every change in a service. Input errors are 400s (serializers and
the services' Django ValidationErrors); a request the current state refuses (stale epoch,
target peer down or in maintenance) is a 409 (see ``common.api_conventions``).
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, QuerySet, Subquery
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api_conventions import (
    CONFLICT,
    NOT_ALLOWED,
    NOT_FOUND,
    VALIDATION_ERROR,
    Conflict,
    django_error_text,
)
from common.api_exports import DATE_RANGE_PARAMETERS, EXPORT_RESPONSES, DatedExportMixin
from common.api_schema import ApiSchema
from common.api_views import ReadOnlyResourceViewSet
from common.permissions import requires
from common.roles import (
    DRAIN_SERVERS,
    HANDLE_ALERTS,
    SET_FAILOVER_POLICY,
    SET_PEER_MAINTENANCE,
    SWITCH_OVER_LINKS,
    VIEW_DESKTOP,
)
from failover.api.serializers import (
    AcknowledgeRequestSerializer,
    AlertFilterSerializer,
    AlertSerializer,
    AuditEntryFilterSerializer,
    AuditEntrySerializer,
    DrainRequestSerializer,
    FailoverEventFilterSerializer,
    FailoverEventSerializer,
    LinkFilterSerializer,
    LinkSerializer,
    MaintenanceRequestSerializer,
    PeerFilterSerializer,
    PeerMaintenanceResultSerializer,
    PeerSerializer,
    PolicySerializer,
    PolicyUpdateSerializer,
    ServerSerializer,
    ServerSilenceSerializer,
    SilenceRequestSerializer,
    SwitchoverRequestSerializer,
    SwitchoverResultSerializer,
    UndrainRequestSerializer,
    UnsilenceRequestSerializer,
)
from failover.choices import PeerConnection
from failover.exports import AUDIT_COLUMNS, EVENT_COLUMNS
from failover.models import Alert, AuditEntry, FailoverEvent, Link, Peer, Policy, Server
from failover.services.alert_actions import (
    AlertActionRefused,
    active_silences,
    alert_acknowledge,
    server_silence_end,
    server_silence_start,
)
from failover.services.drain import server_drain, server_undrain
from failover.services.maintenance import peer_set_maintenance
from failover.services.policy import policy_update
from failover.services.switchover import SwitchoverRefused, SwitchoverResult, link_switchover


class ServerViewSet(ReadOnlyResourceViewSet):
    """Collaboration Servers and their own health."""

    serializer_class = ServerSerializer
    queryset = Server.objects.order_by("name")

    def get_queryset(self) -> QuerySet[Server]:
        # "Now" is the request's: a silence is in force or not at the time it is read.
        in_force = active_silences().filter(server_id=OuterRef("pk")).order_by("-ends_at")
        return super().get_queryset().annotate(silenced_until=Subquery(in_force.values("ends_at")[:1]))

    @extend_schema(
        summary="Silence the server's alerts for a while (a maintenance window)",
        request=SilenceRequestSerializer,
        responses={200: ServerSilenceSerializer, 400: VALIDATION_ERROR, 403: NOT_ALLOWED, 404: NOT_FOUND},
    )
    @requires(HANDLE_ALERTS)
    @action(detail=True, methods=["post"])
    def silence(self, request: Request, pk: str | None = None) -> Response:
        """From now for ``minutes`` (1 to 10080) the server's alerts notify no one; they are
        still raised, cleared and shown. Ends by itself; a window in force is replaced.
        Audited with the reason."""
        server = self.get_object()
        body = SilenceRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        silence = server_silence_start(
            server_id=server.pk,
            minutes=body.validated_data["minutes"],
            actor=request.user,
            reason=body.validated_data["reason"],
        )
        return Response(ServerSilenceSerializer(silence).data)

    @extend_schema(
        summary="End the server's silence early",
        request=UnsilenceRequestSerializer,
        responses={
            200: ServerSilenceSerializer,
            400: VALIDATION_ERROR,
            403: NOT_ALLOWED,
            404: NOT_FOUND,
            409: CONFLICT,
        },
    )
    @requires(HANDLE_ALERTS)
    @action(detail=True, methods=["post"])
    def unsilence(self, request: Request, pk: str | None = None) -> Response:
        """The server's alerts notify again from now. 409 when it is not silenced. Audited."""
        server = self.get_object()
        body = UnsilenceRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            silence = server_silence_end(server_id=server.pk, actor=request.user, reason=body.validated_data["reason"])
        except AlertActionRefused as refused:
            raise Conflict(django_error_text(refused)) from refused
        return Response(ServerSilenceSerializer(silence).data)

    @extend_schema(
        summary="Drain a server for planned maintenance (no new sessions, queue handed on)",
        request=DrainRequestSerializer,
        responses={200: ServerSerializer, 400: VALIDATION_ERROR, 403: NOT_ALLOWED, 404: NOT_FOUND},
    )
    @requires(DRAIN_SERVERS)
    @action(detail=True, methods=["post"])
    def drain(self, request: Request, pk: str | None = None) -> Response:
        """The director skips it and its nodes' /readyz answers 503; its queued sessions move
        to a surviving routing server in order; its agents are asked to finish; sessions still
        open at ``deadline_minutes`` end with ``server_maintenance``. Stopping it then is not a
        failure; ``GET /api/v1/status/`` says when it is empty (``safe_to_restart``).
        Idempotent (a second call only changes the deadline); audited with the reason."""
        server = self.get_object()
        body = DrainRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        server = server_drain(
            server_id=server.pk,
            actor=request.user,
            reason=body.validated_data["reason"],
            deadline_minutes=body.validated_data.get("deadline_minutes"),
        )
        return Response(ServerSerializer(server).data)

    @extend_schema(
        summary="Take a server out of drain: it takes new sessions again",
        request=UndrainRequestSerializer,
        responses={200: ServerSerializer, 400: VALIDATION_ERROR, 403: NOT_ALLOWED, 404: NOT_FOUND},
    )
    @requires(DRAIN_SERVERS)
    @action(detail=True, methods=["post"])
    def undrain(self, request: Request, pk: str | None = None) -> Response:
        """Idempotent; audited with the reason."""
        server = self.get_object()
        body = UndrainRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        server = server_undrain(server_id=server.pk, actor=request.user, reason=body.validated_data["reason"])
        return Response(ServerSerializer(server).data)


@extend_schema_view(list=extend_schema(parameters=[AlertFilterSerializer]))
class AlertViewSet(ReadOnlyResourceViewSet):
    """Alerts, newest first: open and cleared, acknowledged or not, silenced or not."""

    serializer_class = AlertSerializer
    filter_serializer_class = AlertFilterSerializer
    queryset = Alert.objects.select_related("server").order_by("-raised_at", "-id")

    def get_queryset(self) -> QuerySet[Alert]:
        silenced = Exists(active_silences().filter(server_id=OuterRef("server_id")))
        return super().get_queryset().annotate(silenced=silenced)

    @extend_schema(
        summary="Acknowledge an open alert, with a note",
        request=AcknowledgeRequestSerializer,
        responses={200: AlertSerializer, 400: VALIDATION_ERROR, 403: NOT_ALLOWED, 404: NOT_FOUND, 409: CONFLICT},
    )
    @requires(HANDLE_ALERTS)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request: Request, pk: str | None = None) -> Response:
        """Record who has seen the alert and what they are doing about it. It stays
        acknowledged while raised again, until it clears. 409 when it is cleared or
        already acknowledged. Audited with the note."""
        alert = self.get_object()
        body = AcknowledgeRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            alert_acknowledge(alert_id=alert.pk, actor=request.user, note=body.validated_data["note"])
        except AlertActionRefused as refused:
            raise Conflict(django_error_text(refused)) from refused
        return Response(AlertSerializer(self.get_queryset().get(pk=alert.pk)).data)


@extend_schema_view(list=extend_schema(parameters=[PeerFilterSerializer]))
class PeerViewSet(ReadOnlyResourceViewSet):
    """Media Blenders and Admin Workstations, with connection, maintenance and probe results."""

    serializer_class = PeerSerializer
    filter_serializer_class = PeerFilterSerializer
    queryset = Peer.objects.select_related("server").order_by("server__name", "kind", "priority")

    @extend_schema(
        summary="Put a peer into maintenance (draining it) or take it out",
        request=MaintenanceRequestSerializer,
        responses={
            200: PeerMaintenanceResultSerializer,
            400: VALIDATION_ERROR,
            403: NOT_ALLOWED,
            404: NOT_FOUND,
        },
    )
    @requires(SET_PEER_MAINTENANCE)
    @action(detail=True, methods=["post"])
    def maintenance(self, request: Request, pk: str | None = None) -> Response:
        """Drain a connected peer (its link switches to the other peer, or goes down if that
        one is not eligible) and keep it out of service; or release it (a down link is
        reconnected to it). Idempotent; audited with the reason."""
        peer = self.get_object()
        body = MaintenanceRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = peer_set_maintenance(
            peer_id=peer.pk, on=body.validated_data["on"], actor=request.user, reason=body.validated_data["reason"]
        )
        peer = self.get_queryset().get(pk=peer.pk)
        peer.switchover = _switchover_link(result) if result is not None else None
        return Response(PeerMaintenanceResultSerializer(peer).data)


def _connected_peer() -> QuerySet:
    """The link's connected peer, as a correlated subquery (a link has no foreign key to it)."""
    return Peer.objects.filter(
        server_id=OuterRef("server_id"), kind=OuterRef("kind"), connection=PeerConnection.CONNECTED
    )


def links_with_active_peer() -> QuerySet[Link]:
    """Links annotated with ``active_peer_id`` and ``active_peer_name`` for ``LinkSerializer``.

    Annotated rather than prefetched: one query for a page of links, whatever its size.
    """
    return (
        Link.objects.select_related("server")
        .annotate(
            active_peer_id=Subquery(_connected_peer().values("id")[:1]),
            active_peer_name=Subquery(_connected_peer().values("name")[:1]),
        )
        .order_by("server__name", "kind")
    )


def _switchover_link(result: SwitchoverResult) -> Link:
    """The link as it is now, carrying what the switchover did, for ``SwitchoverResultSerializer``."""
    link = links_with_active_peer().get(pk=result.link.pk)
    link.outcome = result.outcome
    link.failover_event_id = result.event.pk if result.event is not None else None
    return link


@extend_schema_view(list=extend_schema(parameters=[LinkFilterSerializer]))
class LinkViewSet(ReadOnlyResourceViewSet):
    """Each server's Media Blender and Admin Workstation links: state, epoch, active peer."""

    serializer_class = LinkSerializer
    filter_serializer_class = LinkFilterSerializer
    queryset = links_with_active_peer()

    @extend_schema(
        summary="Switch a link to the other (or a given) peer, with a reason",
        request=SwitchoverRequestSerializer,
        responses={
            200: SwitchoverResultSerializer,
            400: VALIDATION_ERROR,
            403: NOT_ALLOWED,
            404: NOT_FOUND,
            409: CONFLICT,
        },
    )
    @requires(SWITCH_OVER_LINKS)
    @action(detail=True, methods=["post"])
    def switchover(self, request: Request, pk: str | None = None) -> Response:
        """Connect ``to_peer`` (default: the pair's other peer) and raise the epoch.

        200 with the link and ``outcome`` (``unchanged`` when that peer was connected
        already). 409 when the target is down or in maintenance, or when
        ``expected_epoch`` is not the link's epoch any more (the body then carries
        ``current_epoch``). Audited, with a ``manual`` failover event.
        """
        link = self.get_object()
        body = SwitchoverRequestSerializer(data=request.data, context={"link": link})
        body.is_valid(raise_exception=True)
        expected_epoch = body.validated_data.get("expected_epoch")
        try:
            result = link_switchover(
                link_id=link.pk,
                actor=request.user,
                reason=body.validated_data["reason"],
                to_peer_id=body.validated_data.get("to_peer"),
                expected_epoch=expected_epoch,
            )
        except SwitchoverRefused as refused:
            # The body was valid (serializer above), so what is left is the state's refusal.
            raise Conflict(django_error_text(refused)) from refused
        if result.outcome == "stale":
            raise Conflict(
                f"Stale request: the link's epoch is {result.link.epoch}, not {expected_epoch}; "
                "it changed since you read it. Read the link again and retry if still wanted.",
                current_epoch=result.link.epoch,
            )
        return Response(SwitchoverResultSerializer(_switchover_link(result)).data)


@extend_schema_view(
    list=extend_schema(parameters=[FailoverEventFilterSerializer, *DATE_RANGE_PARAMETERS]),
    export=extend_schema(
        summary="Export failover events as CSV",
        parameters=[FailoverEventFilterSerializer, *DATE_RANGE_PARAMETERS],
        responses=EXPORT_RESPONSES,
    ),
)
class FailoverEventViewSet(DatedExportMixin, ReadOnlyResourceViewSet):
    """Failovers, newest first, with their detection and switchover durations; ``from``/``to``
    on the detection time; ``export/`` gives the same list as CSV."""

    serializer_class = FailoverEventSerializer
    filter_serializer_class = FailoverEventFilterSerializer
    queryset = FailoverEvent.objects.select_related("server", "link", "from_peer", "to_peer", "actor").order_by(
        "-detected_at", "-id"
    )
    date_field = "detected_at"
    export_columns = EVENT_COLUMNS
    export_filename = "failover-events.csv"


@extend_schema_view(
    list=extend_schema(parameters=[AuditEntryFilterSerializer, *DATE_RANGE_PARAMETERS]),
    export=extend_schema(
        summary="Export the audit history as CSV",
        parameters=[AuditEntryFilterSerializer, *DATE_RANGE_PARAMETERS],
        responses=EXPORT_RESPONSES,
    ),
)
class AuditEntryViewSet(DatedExportMixin, ReadOnlyResourceViewSet):
    """The audit history, newest first; ``from``/``to`` on its time; ``export/`` as CSV."""

    serializer_class = AuditEntrySerializer
    filter_serializer_class = AuditEntryFilterSerializer
    queryset = AuditEntry.objects.order_by("-created_at", "-id")
    date_field = "created_at"
    export_columns = AUDIT_COLUMNS
    export_filename = "audit-history.csv"


class PolicyView(APIView):
    """The failover policy (one for the installation): read it, or change it with a reason."""

    schema = ApiSchema()

    @extend_schema(summary="The failover policy", responses={200: PolicySerializer, 403: NOT_ALLOWED})
    @requires(VIEW_DESKTOP)
    def get(self, request: Request) -> Response:
        return Response(PolicySerializer(Policy.current()).data)

    @extend_schema(
        summary="Change the failover policy",
        description="Send only the fields to change, and always `reason` (required even in a PATCH). "
        "Unknown and read-only fields are refused. Audited with the before and after of the changed fields.",
        request=PolicyUpdateSerializer,
        responses={200: PolicySerializer, 400: VALIDATION_ERROR, 403: NOT_ALLOWED},
    )
    @requires(SET_FAILOVER_POLICY)
    def patch(self, request: Request) -> Response:
        # Not partial: every policy field is optional anyway, and partial would make
        # ``reason`` optional too.
        body = PolicyUpdateSerializer(instance=Policy.current(), data=request.data)
        body.is_valid(raise_exception=True)
        changes = dict(body.validated_data)
        reason = changes.pop("reason")
        policy = policy_update(actor=request.user, reason=reason, changes=changes)
        return Response(PolicySerializer(policy).data)
