"""The Django admin of the sessions app: agents and skill groups to configure, sessions to read.

An agent's state (ready, not ready, logged out) belongs to the agent and the services
that register it with the Media Blender, so it is shown, not edited. Sessions are made by
callers and moved by the services; the admin only shows them.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count, ManyToManyField, QuerySet
from django.http import HttpRequest

from common.admin_save import save_fields
from sessions.choices import AgentState
from sessions.models import Agent, CollaborationSession, SkillGroup


class AgentAdminForm(forms.ModelForm):
    class Meta:
        model = Agent
        fields = ("user", "server", "icm_id", "enabled", "max_sessions", "skill_groups")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        # Agent.clean() can only check the skill groups already stored; these are the
        # submitted ones, checked before anything is saved.
        server = cleaned.get("server")
        groups = cleaned.get("skill_groups")
        if server is not None and groups is not None:
            foreign = sorted(f"{group.server.name} / {group.name}" for group in groups if group.server_id != server.pk)
            if foreign:
                self.add_error(
                    "skill_groups", f"Skill groups must belong to the agent's server ({server}): {', '.join(foreign)}."
                )
        # ``state`` is read-only here, so Django skips the constraint that mentions it.
        if cleaned.get("enabled") is False and self.instance.state != AgentState.LOGGED_OUT:
            self.add_error("enabled", "This agent is logged in: log it out before disabling it.")
        return cleaned


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    form = AgentAdminForm
    list_display = (
        "username",
        "display_name",
        "server",
        "icm_id",
        "enabled",
        "state",
        "max_sessions",
        "skill_group_names",
    )
    list_filter = ("server", "state", "enabled")
    search_fields = ("user__username", "user__first_name", "user__last_name", "icm_id")
    list_select_related = ("user", "server")
    autocomplete_fields = ("user",)
    filter_horizontal = ("skill_groups",)
    fieldsets = (
        (None, {"fields": ("user", "server", "icm_id", "enabled", "max_sessions", "skill_groups")}),
        (
            "State (changed by the agent and the services, read-only)",
            {"fields": ("state", "state_changed_at", "logged_in_at", "logged_out_at", "logout_reason")},
        ),
    )
    readonly_fields = ("state", "state_changed_at", "logged_in_at", "logged_out_at", "logout_reason")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Agent]:
        return super().get_queryset(request).prefetch_related("skill_groups")

    def save_model(self, request: HttpRequest, obj: Agent, form: forms.ModelForm, change: bool) -> None:
        # Only the changed fields: the agent's state may change while this request runs.
        save_fields(obj, form.changed_data)

    def formfield_for_manytomany(
        self, db_field: ManyToManyField, request: HttpRequest, **kwargs: Any
    ) -> forms.ModelMultipleChoiceField:
        field = super().formfield_for_manytomany(db_field, request, **kwargs)
        if db_field.name == "skill_groups":
            # Every server has its own "Sales": name the server in the choice.
            field.queryset = field.queryset.select_related("server")
            field.label_from_instance = lambda group: f"{group.server.name} / {group.name} ({group.icm_id})"
        return field

    @admin.display(description="username", ordering="user__username")
    def username(self, agent: Agent) -> str:
        return agent.user.get_username()

    @admin.display(description="name")
    def display_name(self, agent: Agent) -> str:
        return agent.display_name

    @admin.display(description="skill groups")
    def skill_group_names(self, agent: Agent) -> str:
        return ", ".join(group.name for group in agent.skill_groups.all())


@admin.register(SkillGroup)
class SkillGroupAdmin(admin.ModelAdmin):
    list_display = ("name", "icm_id", "server", "agent_count")
    list_filter = ("server",)
    search_fields = ("name", "icm_id", "server__name")
    list_select_related = ("server",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[SkillGroup]:
        return super().get_queryset(request).annotate(agent_count=Count("agents"))

    @admin.display(description="agents", ordering="agent_count")
    def agent_count(self, group: SkillGroup) -> int:
        return group.agent_count


@admin.register(CollaborationSession)
class CollaborationSessionAdmin(admin.ModelAdmin):
    """Made by callers, moved and ended by the services: shown here, never edited."""

    list_display = (
        "caller_name",
        "server",
        "state",
        "phone_leg",
        "agent",
        "skill_group",
        "queued_at",
        "activated_at",
        "ended_at",
        "end_reason",
    )
    list_filter = ("state", "server", "end_reason", "phone_leg")
    search_fields = ("caller_name", "caller_contact", "topic")
    date_hierarchy = "queued_at"
    list_select_related = ("server", "agent__user", "skill_group")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: CollaborationSession | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: CollaborationSession | None = None) -> bool:
        # Deleting would erase history the audit and the metrics refer to.
        return False
