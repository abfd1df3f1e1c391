"""Agents and collaboration sessions: everything for staff, its own rows for an agent.

``POST /api/v1/sessions/`` is different: a caller's request, open to any authenticated
user (scripts with a token; the caller's web form posts through the same service).
"""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from collabadmin.api import NOT_ALLOWED, UNAVAILABLE, VALIDATION_ERROR, ServiceUnavailable
from collabadmin.permissions import IsStaffOrAgent, agent_of, is_staff
from failover.api.views import ReadOnlyResourceViewSet
from sessions.api.serializers import (
    AgentFilterSerializer,
    AgentSerializer,
    SessionFilterSerializer,
    SessionRequestSerializer,
    SessionSerializer,
)
from sessions.models import Agent, CollaborationSession
from sessions.services.director import NoHealthyServer
from sessions.services.requests import session_request


class OwnRowsMixin:
    """Staff see every row; an agent only the rows ``agent_lookup`` ties to it.

    Narrowing the queryset (rather than checking each object) makes another agent's row
    a 404 on detail, so an agent cannot even learn that it exists.
    """

    agent_lookup: str  # the field that holds the agent's id

    def get_queryset(self) -> QuerySet:
        queryset = super().get_queryset()  # type: ignore[misc]
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return queryset
        user = self.request.user  # type: ignore[attr-defined]
        if is_staff(user):
            return queryset
        agent = agent_of(user)
        # IsStaffOrAgent has let only agents through; .none() is the belt to its braces.
        return queryset.filter(**{self.agent_lookup: agent.pk}) if agent else queryset.none()


@extend_schema_view(list=extend_schema(parameters=[AgentFilterSerializer]))
class AgentViewSet(OwnRowsMixin, ReadOnlyResourceViewSet):
    """Agents with their state and skill groups; an agent sees only itself."""

    permission_classes = [IsStaffOrAgent]
    serializer_class = AgentSerializer
    filter_serializer_class = AgentFilterSerializer
    agent_lookup = "pk"
    queryset = (
        Agent.objects.select_related("user", "server")
        .prefetch_related("skill_groups")
        .order_by("server__name", "user__username")
    )


@extend_schema_view(list=extend_schema(parameters=[SessionFilterSerializer]))
class SessionViewSet(OwnRowsMixin, ReadOnlyResourceViewSet):
    """Collaboration sessions in queue order (oldest first); an agent sees only its own.

    Anyone logged in may ask for a new one (``create``): that is a caller's request.
    """

    permission_classes = [IsStaffOrAgent]
    serializer_class = SessionSerializer
    filter_serializer_class = SessionFilterSerializer
    agent_lookup = "agent_id"
    # The id breaks ties between sessions queued in the same instant, so pages never overlap.
    queryset = CollaborationSession.objects.select_related("server", "agent__user", "skill_group", "ended_by").order_by(
        "queued_at", "id"
    )

    def get_permissions(self) -> list[BasePermission]:
        if self.action == "create":
            return [IsAuthenticated()]
        return super().get_permissions()

    @extend_schema(
        summary="Ask for a collaboration session (a caller's request)",
        description="The built-in director queues it on the least-loaded healthy routing server. "
        "503 with Retry-After when no routing server is healthy.",
        request=SessionRequestSerializer,
        responses={201: SessionSerializer, 400: VALIDATION_ERROR, 403: NOT_ALLOWED, 503: UNAVAILABLE},
    )
    def create(self, request: Request) -> Response:
        body = SessionRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            session = session_request(
                caller_name=data["caller_name"],
                caller_contact=data["caller_contact"],
                topic=data["topic"],
                skill_group_name=data["skill_group"] or None,
                actor=request.user,
            )
        except NoHealthyServer as unavailable:
            raise ServiceUnavailable(str(unavailable), retry_after=unavailable.retry_after) from unavailable
        # Serialized as the service returned it: get_queryset() is narrowed to the requester's
        # own rows, which a session that was just queued is not (for an agent or a script).
        return Response(SessionSerializer(session).data, status=status.HTTP_201_CREATED)
