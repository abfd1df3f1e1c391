"""The Django admin of the sessions app: agents and skill groups to look at, sessions to read.

Who decides what (issue 22, docs/operations.md "The Django admin"):

- The ICM is the source of truth for agents, skill groups and memberships. Adding or
  removing an agent, adding a skill group and changing an agent's skill groups are done
  by the wizards on the Administration desktop (``/console/wizards/``), which change the
  ICM through the Admin Workstation and this server together; a change made in the ICM
  itself comes in through Verify and Sync (``/console/sync/``). So here an agent's user,
  server, ICM id and skill groups are read-only, agents cannot be added or deleted, and
  skill groups are shown only; the pages link to the wizards.
- An agent's ``enabled`` and ``max_sessions`` are kept by this server: saving them goes
  through ``agent_settings_update`` with a required reason, audited with before/after,
  and the connected Media Blender is told after the commit.
- An agent's state (ready, not ready, logged out) belongs to the agent and the services
  that register it with the Media Blender, so it is shown, not edited. Sessions are made
  by callers and moved by the services; the admin only shows them.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from failover.admin import ReadOnlyAdminMixin
from failover.services.audit import REASON_MAX
from sessions.choices import AgentState
from sessions.models import Agent, CollaborationSession, SkillGroup
from sessions.services.agent_settings import LOCAL_FIELDS, agent_settings_update


def from_the_icm(what: str) -> SafeString:
    """The note that sends a reader to the wizards for what the ICM decides."""
    return format_html(
        '{} come from the ICM: change them with the <a href="{}">wizards</a> of the Administration '
        "desktop (or in the ICM, then Verify and Sync).",
        what,
        reverse("console-wizards"),
    )


class AgentAdminForm(forms.ModelForm):
    reason = forms.CharField(max_length=REASON_MAX, help_text="Why these settings change; kept in the audit history.")

    class Meta:
        model = Agent
        fields = LOCAL_FIELDS

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        # ``state`` is read-only here, so Django skips the constraint that mentions it.
        # (The service would log the agent out; from the admin that is asked for first.)
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
    readonly_fields = (
        "user",
        "server",
        "icm_id",
        "skill_group_names",
        "state",
        "state_changed_at",
        "logged_in_at",
        "logged_out_at",
        "logout_reason",
    )

    def get_fieldsets(self, request: HttpRequest, obj: Agent | None = None) -> list[tuple[str | None, dict]]:
        return [
            (
                "From the ICM (read-only here)",
                {
                    "fields": ("user", "server", "icm_id", "skill_group_names"),
                    "description": from_the_icm("The agent, its ICM id and its skill groups"),
                },
            ),
            ("Kept by this server", {"fields": (*LOCAL_FIELDS, "reason")}),
            (
                "State (changed by the agent and the services, read-only)",
                {"fields": ("state", "state_changed_at", "logged_in_at", "logged_out_at", "logout_reason")},
            ),
        ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the "Add an agent" wizard creates it in the ICM and here

    def has_delete_permission(self, request: HttpRequest, obj: Agent | None = None) -> bool:
        return False  # the "Remove an agent" wizard deletes it from the ICM and here

    def get_queryset(self, request: HttpRequest) -> QuerySet[Agent]:
        return super().get_queryset(request).prefetch_related("skill_groups")

    def save_model(self, request: HttpRequest, obj: Agent, form: forms.ModelForm, change: bool) -> None:
        # The service locks the row and writes only what changed: the agent's state may
        # change while this request runs.
        changes = {name: form.cleaned_data[name] for name in form.changed_data if name in LOCAL_FIELDS}
        agent_settings_update(agent_id=obj.pk, actor=request.user, reason=form.cleaned_data["reason"], changes=changes)
        obj.refresh_from_db()

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
class SkillGroupAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Skill groups are the ICM's: added by the "Add a skill group" wizard, renamed or
    removed in the ICM and brought here by Verify and Sync. Shown, never edited here."""

    list_display = ("name", "icm_id", "server", "agent_count")
    list_filter = ("server",)
    search_fields = ("name", "icm_id", "server__name")
    list_select_related = ("server",)

    def get_fieldsets(self, request: HttpRequest, obj: SkillGroup | None = None) -> list[tuple[str | None, dict]]:
        return [(None, {"fields": ("server", "icm_id", "name"), "description": from_the_icm("Skill groups")})]

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
