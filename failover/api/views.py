"""The administrators' console API: status snapshot, servers, peers, links, events, audit.

Read-only for now; the actions (switchover, maintenance) come with their services.
Views stay thin: querysets and permissions here, reading logic in ``failover.selectors``.
"""

from __future__ import annotations

from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from collabadmin.permissions import IsStaff
from failover.api.serializers import (
    AuditEntryFilterSerializer,
    AuditEntrySerializer,
    FailoverEventFilterSerializer,
    FailoverEventSerializer,
    LinkFilterSerializer,
    LinkSerializer,
    PeerFilterSerializer,
    PeerSerializer,
    ServerSerializer,
    StatusSnapshotSerializer,
)
from failover.choices import PeerConnection
from failover.models import AuditEntry, FailoverEvent, Link, Peer, Server
from failover.selectors import status_snapshot


class ReadOnlyResourceViewSet(viewsets.ReadOnlyModelViewSet):
    """List and detail, with query filters validated by ``filter_serializer_class``.

    Each filter field's ``source`` is the ORM lookup it applies. Validating through a
    serializer is what turns ``?state=bogus`` into a 400 with a message instead of an
    empty page or a database error.
    """

    filter_serializer_class: type[serializers.Serializer] | None = None

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = super().filter_queryset(queryset)
        # Filters narrow lists only: a detail URL names its object already.
        if self.action == "list" and self.filter_serializer_class is not None:
            queryset = queryset.filter(**self.validated_filters())
        return queryset

    def validated_filters(self) -> dict[str, Any]:
        """The list's query filters as ORM lookups; raises a 400 ValidationError if one is bad."""
        assert self.filter_serializer_class is not None
        # A blank value (what an empty HTML <select> sends) means "no filter", not "blank".
        data = {key: value for key, value in self.request.query_params.items() if value != ""}
        serializer = self.filter_serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


class StatusView(APIView):
    """The whole installation in one snapshot (the same one the status WebSocket sends first)."""

    permission_classes = [IsStaff]

    @extend_schema(
        summary="Snapshot of servers, links, peers, session counts and open alerts",
        responses=StatusSnapshotSerializer,
    )
    def get(self, request: Request) -> Response:
        return Response(status_snapshot())


class ServerViewSet(ReadOnlyResourceViewSet):
    """Collaboration Servers and their own health."""

    permission_classes = [IsStaff]
    serializer_class = ServerSerializer
    queryset = Server.objects.order_by("name")


@extend_schema_view(list=extend_schema(parameters=[PeerFilterSerializer]))
class PeerViewSet(ReadOnlyResourceViewSet):
    """Media Blenders and Admin Workstations, with connection, maintenance and probe results."""

    permission_classes = [IsStaff]
    serializer_class = PeerSerializer
    filter_serializer_class = PeerFilterSerializer
    queryset = Peer.objects.select_related("server").order_by("server__name", "kind", "priority")


def _connected_peer() -> QuerySet:
    """The link's connected peer, as a correlated subquery (a link has no foreign key to it)."""
    return Peer.objects.filter(
        server_id=OuterRef("server_id"), kind=OuterRef("kind"), connection=PeerConnection.CONNECTED
    )


@extend_schema_view(list=extend_schema(parameters=[LinkFilterSerializer]))
class LinkViewSet(ReadOnlyResourceViewSet):
    """Each server's Media Blender and Admin Workstation links: state, epoch, active peer."""

    permission_classes = [IsStaff]
    serializer_class = LinkSerializer
    filter_serializer_class = LinkFilterSerializer
    # Annotated rather than prefetched: one query for the page, whatever its size.
    queryset = (
        Link.objects.select_related("server")
        .annotate(
            active_peer_id=Subquery(_connected_peer().values("id")[:1]),
            active_peer_name=Subquery(_connected_peer().values("name")[:1]),
        )
        .order_by("server__name", "kind")
    )


@extend_schema_view(list=extend_schema(parameters=[FailoverEventFilterSerializer]))
class FailoverEventViewSet(ReadOnlyResourceViewSet):
    """Failovers, newest first, with their detection and switchover durations."""

    permission_classes = [IsStaff]
    serializer_class = FailoverEventSerializer
    filter_serializer_class = FailoverEventFilterSerializer
    queryset = FailoverEvent.objects.select_related("server", "from_peer", "to_peer", "actor").order_by(
        "-detected_at", "-id"
    )


@extend_schema_view(list=extend_schema(parameters=[AuditEntryFilterSerializer]))
class AuditEntryViewSet(ReadOnlyResourceViewSet):
    """The audit history, newest first."""

    permission_classes = [IsStaff]
    serializer_class = AuditEntrySerializer
    filter_serializer_class = AuditEntryFilterSerializer
    queryset = AuditEntry.objects.order_by("-created_at", "-id")
