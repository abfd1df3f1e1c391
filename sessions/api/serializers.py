"""Serializers of the sessions API: agents, collaboration sessions, their query filters."""

from __future__ import annotations

from rest_framework import serializers

from common.api_conventions import MAX_ID
from sessions.choices import AgentState, SessionState
from sessions.models import Agent, CollaborationSession, SkillGroup


class SkillGroupRefSerializer(serializers.ModelSerializer):
    class Meta:
        model = SkillGroup
        fields = ["id", "icm_id", "name"]
        read_only_fields = fields


class AgentSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    display_name = serializers.CharField(read_only=True)
    server_name = serializers.CharField(source="server.name", read_only=True)
    skill_groups = SkillGroupRefSerializer(many=True, read_only=True)

    class Meta:
        model = Agent
        fields = [
            "id",
            "username",
            "display_name",
            "server",
            "server_name",
            "icm_id",
            "enabled",
            "state",
            "state_changed_at",
            "max_sessions",
            "skill_groups",
            "logged_in_at",
            "logged_out_at",
            "logout_reason",
        ]
        read_only_fields = fields


class SessionSerializer(serializers.ModelSerializer):
    server_name = serializers.CharField(source="server.name", read_only=True)
    agent_name = serializers.CharField(source="agent.display_name", read_only=True, allow_null=True, default=None)
    skill_group_name = serializers.CharField(source="skill_group.name", read_only=True, allow_null=True, default=None)
    ended_by = serializers.CharField(source="ended_by.get_username", read_only=True, allow_null=True, default=None)

    class Meta:
        model = CollaborationSession
        fields = [
            "id",
            "server",
            "server_name",
            "adopted_from",
            "skill_group",
            "skill_group_name",
            "any_skill_group",
            "caller_name",
            "caller_contact",
            "topic",
            "state",
            "phone_leg",
            "agent",
            "agent_name",
            "queued_at",
            "routed_at",
            "route_epoch",
            "activated_at",
            "phone_hung_up_at",
            "phone_peer",
            "phone_epoch",
            "phone_unknown_at",
            "phone_note",
            "ended_at",
            "end_reason",
            "ended_by",
            "end_note",
        ]
        read_only_fields = fields


# --- Query filters (validated, so a bad value is a 400, never a 500) ------------------------
# Each field's ``source`` is the ORM lookup it filters on.


class AgentFilterSerializer(serializers.Serializer):
    server = serializers.IntegerField(
        source="server_id", required=False, min_value=1, max_value=MAX_ID, help_text="Server id."
    )
    state = serializers.ChoiceField(choices=AgentState.choices, required=False)


class SessionFilterSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=SessionState.choices, required=False)
    server = serializers.IntegerField(
        source="server_id", required=False, min_value=1, max_value=MAX_ID, help_text="Server id."
    )
    agent = serializers.IntegerField(
        source="agent_id", required=False, min_value=1, max_value=MAX_ID, help_text="Agent id."
    )


# --- A caller's request ---------------------------------------------------------------------


class SessionRequestSerializer(serializers.Serializer):
    """What a caller (or a script on its behalf) sends to ask for a session."""

    caller_name = serializers.CharField(max_length=100, help_text="Who is asking; shown to the agent.")
    caller_contact = serializers.CharField(
        max_length=200, required=False, allow_blank=True, default="", help_text="E-mail or phone number."
    )
    topic = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    skill_group = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        allow_null=True,
        default=None,
        help_text="The skill group's name on the chosen server; empty: any agent.",
    )


# --- Ending a session -----------------------------------------------------------------------


class SessionEndSerializer(serializers.Serializer):
    """Why the session ends. Optional for the session's own agent; required for an
    administrator ending someone else's session (kept in the audit history)."""

    reason = serializers.CharField(
        max_length=300,
        required=False,
        allow_blank=True,
        default="",
        help_text="Why the session ends. Required for administrators; optional for the session's agent.",
    )
