"""Agents and the skill groups they belong to (mirrored in the ICM configuration)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from sessions.choices import AgentState, LogoutReason


class SkillGroup(models.Model):
    """A skill group of one server's configuration; ``icm_id`` is its key in the ICM."""

    server = models.ForeignKey("failover.Server", on_delete=models.CASCADE, related_name="skill_groups")
    icm_id = models.CharField(max_length=64, help_text="The skill group's identifier in the ICM configuration.")
    name = models.CharField(max_length=100)

    class Meta:
        ordering = ["server__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["server", "icm_id"], name="collab_skillgroup_unique_icm_id_per_server"),
            models.UniqueConstraint(fields=["server", "name"], name="collab_skillgroup_unique_name_per_server"),
        ]

    def __str__(self) -> str:
        return self.name


class Agent(models.Model):
    """A person who takes sessions on one server's Agent desktop.

    ``state`` is the agent's own choice (ready / not ready) while logged in; whether it
    can take one more session also depends on ``max_sessions`` and its open sessions.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent")
    server = models.ForeignKey("failover.Server", on_delete=models.PROTECT, related_name="agents")
    icm_id = models.CharField(max_length=64, help_text="The agent's identifier in the ICM configuration.")
    skill_groups = models.ManyToManyField(SkillGroup, blank=True, related_name="agents")
    enabled = models.BooleanField(default=True)
    state = models.CharField(max_length=16, choices=AgentState.choices, default=AgentState.LOGGED_OUT)
    state_changed_at = models.DateTimeField(null=True, blank=True)
    max_sessions = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)])
    logged_in_at = models.DateTimeField(null=True, blank=True)
    logged_out_at = models.DateTimeField(null=True, blank=True)
    logout_reason = models.CharField(max_length=16, choices=LogoutReason.choices, blank=True)

    class Meta:
        ordering = ["server__name", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["server", "icm_id"], name="collab_agent_unique_icm_id_per_server"),
            models.CheckConstraint(
                condition=Q(state=AgentState.LOGGED_OUT) | Q(enabled=True),
                name="collab_agent_disabled_is_logged_out",
                violation_error_message="A disabled agent cannot be logged in.",
            ),
        ]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return self.user.get_full_name() or self.user.get_username()

    def clean(self) -> None:
        # Skill groups belong to one server's configuration; mixing servers would make
        # routing and Verify and Sync disagree. Only checkable once the row exists.
        if self.pk and self.skill_groups.exclude(server_id=self.server_id).exists():
            raise ValidationError({"skill_groups": "Skill groups must belong to the agent's server."})
