"""Agents and collaboration sessions: everything for staff, its own rows for an agent."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view

from collabadmin.permissions import IsStaffOrAgent, agent_of, is_staff
from failover.api.views import ReadOnlyResourceViewSet
from sessions.api.serializers import (
    AgentFilterSerializer,
    AgentSerializer,
    SessionFilterSerializer,
    SessionSerializer,
)
from sessions.models import Agent, CollaborationSession


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
    """Collaboration sessions in queue order (oldest first); an agent sees only its own."""

    permission_classes = [IsStaffOrAgent]
    serializer_class = SessionSerializer
    filter_serializer_class = SessionFilterSerializer
    agent_lookup = "agent_id"
    # The id breaks ties between sessions queued in the same instant, so pages never overlap.
    queryset = CollaborationSession.objects.select_related("server", "agent__user", "skill_group", "ended_by").order_by(
        "queued_at", "id"
    )
