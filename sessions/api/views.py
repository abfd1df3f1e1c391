"""Agents and collaboration sessions: everything for role holders, its own rows for an agent.

``POST /api/v1/sessions/`` is different: a caller's request, open to any authenticated
user (scripts with a token; the caller's web form posts through the same service).
``POST /api/v1/sessions/{id}/end/`` ends a session: an agent its own ones, a holder of
end_sessions (supervisors, administrators) any one with a reason.
"""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle

from common.api_conventions import (
    NOT_ALLOWED,
    NOT_FOUND,
    UNAVAILABLE,
    VALIDATION_ERROR,
    Conflict,
    ErrorSerializer,
    ServiceUnavailable,
    django_error_text,
)
from common.api_exports import DATE_RANGE_PARAMETERS, EXPORT_RESPONSES, DatedExportMixin
from common.api_views import ReadOnlyResourceViewSet
from common.permissions import may, requires
from common.rate_limit import CallerRequestThrottle
from common.roles import END_SESSIONS, VIEW_DESKTOP
from sessions.api.serializers import (
    AgentFilterSerializer,
    AgentSerializer,
    SessionEndSerializer,
    SessionFilterSerializer,
    SessionRequestSerializer,
    SessionSerializer,
)
from sessions.choices import EndReason
from sessions.exports import SESSION_COLUMNS
from sessions.models import Agent, CollaborationSession
from sessions.permissions import RoleHolderOrAgent, agent_of
from sessions.services.director import NoHealthyServer
from sessions.services.lifecycle import IllegalTransition, session_end
from sessions.services.requests import session_request

ALREADY_ENDED = OpenApiResponse(response=ErrorSerializer, description="The session has ended already.")


class OwnRowsMixin:
    """Role holders (view_desktop) see every row; an agent only the rows ``agent_lookup``
    ties to it.

    Narrowing the queryset (rather than checking each object) makes another agent's row
    a 404 on detail, so an agent cannot even learn that it exists.
    """

    agent_lookup: str  # the field that holds the agent's id

    def get_queryset(self) -> QuerySet:
        queryset = super().get_queryset()  # type: ignore[misc]
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return queryset
        user = self.request.user  # type: ignore[attr-defined]
        if may(user, VIEW_DESKTOP):
            return queryset
        agent = agent_of(user)
        # RoleHolderOrAgent has let only agents through; .none() is the belt to its braces.
        return queryset.filter(**{self.agent_lookup: agent.pk}) if agent else queryset.none()


@extend_schema_view(list=extend_schema(parameters=[AgentFilterSerializer]))
class AgentViewSet(OwnRowsMixin, ReadOnlyResourceViewSet):
    """Agents with their state and skill groups; an agent sees only itself."""

    permission_classes = [RoleHolderOrAgent]
    serializer_class = AgentSerializer
    filter_serializer_class = AgentFilterSerializer
    agent_lookup = "pk"
    queryset = (
        Agent.objects.select_related("user", "server")
        .prefetch_related("skill_groups")
        .order_by("server__name", "user__username")
    )


# One serializer, built once, answers every caller's request: DRF builds and deep-copies a
# ModelSerializer's 21 fields for each instance, which was a tenth of the web node's CPU
# under load (py-spy). Its fields only read the session (no request, no context), so one
# bound set serves every thread.
SESSION_ANSWER = SessionSerializer()


@extend_schema_view(
    list=extend_schema(parameters=[SessionFilterSerializer, *DATE_RANGE_PARAMETERS]),
    export=extend_schema(
        summary="Export sessions as CSV",
        parameters=[SessionFilterSerializer, *DATE_RANGE_PARAMETERS],
        responses=EXPORT_RESPONSES,
    ),
)
class SessionViewSet(DatedExportMixin, OwnRowsMixin, ReadOnlyResourceViewSet):
    """Collaboration sessions in queue order (oldest first); an agent sees only its own.
    ``from``/``to`` on the time the caller asked; ``export/`` gives the same list as CSV.

    Anyone logged in may ask for a new one (``create``): that is a caller's request.
    """

    permission_classes = [RoleHolderOrAgent]
    serializer_class = SessionSerializer
    filter_serializer_class = SessionFilterSerializer
    agent_lookup = "agent_id"
    date_field = "queued_at"
    export_columns = SESSION_COLUMNS
    export_filename = "sessions.csv"
    # The id breaks ties between sessions queued in the same instant, so pages never overlap.
    queryset = CollaborationSession.objects.select_related("server", "agent__user", "skill_group", "ended_by").order_by(
        "queued_at", "id"
    )

    def get_throttles(self) -> list[BaseThrottle]:
        # A caller's request is also counted per client address (RATE_LIMIT_SESSION_REQUESTS),
        # in the same round trip to Redis as its token's count.
        if self.action == "create":
            return [CallerRequestThrottle()]
        return super().get_throttles()

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
        return Response(SESSION_ANSWER.to_representation(session), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="End a session (its agent, or a holder of end_sessions with a reason)",
        description="The session's own agent may end it, with an optional reason (`agent_ended`). "
        "A holder of end_sessions (supervisor, administrator) may end any session and must say why "
        "(`admin_ended`; the text goes to the audit history). Another agent's session is a 404. "
        "Ending an ended session is a 409.",
        request=SessionEndSerializer,
        responses={
            200: SessionSerializer,
            400: VALIDATION_ERROR,
            403: NOT_ALLOWED,
            404: NOT_FOUND,
            409: ALREADY_ENDED,
        },
    )
    @requires(END_SESSIONS)
    @action(detail=True, methods=["post"])
    def end(self, request: Request, pk: str | None = None) -> Response:
        """End the session; 200 with the session as it is now."""
        session = self.get_object()  # narrowed to an agent's own rows: anyone else's is a 404
        body = SessionEndSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        text = body.validated_data["reason"].strip()
        agent = agent_of(request.user)
        # The session's own agent ends it as an agent, whatever its role; anyone else needs
        # end_sessions (an agent who is also a viewer sees other rows but may not end them),
        # and must say why.
        if agent is not None and session.agent_id == agent.pk:
            reason = EndReason.AGENT_ENDED
        elif not may(request.user, END_SESSIONS):
            raise PermissionDenied(f"Your role does not allow this (it needs: {END_SESSIONS.description.lower()}).")
        else:
            if not text:
                raise serializers.ValidationError({"reason": ["Say why you end another agent's session."]})
            reason = EndReason.ADMIN_ENDED
        try:
            session_end(session_id=session.pk, actor=request.user, reason=reason, note=text)
        except IllegalTransition as refused:
            raise Conflict(django_error_text(refused)) from refused
        return Response(SessionSerializer(self.get_queryset().get(pk=session.pk)).data)
