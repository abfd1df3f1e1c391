"""The failover policy: one row of tunables, edited in the Django admin."""

from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q


class Policy(models.Model):
    """Timings and switches that govern detection, switchover and session handling.

    A singleton (``id`` is always 1, enforced by the database); ``Policy.current()``
    returns it, creating the defaults the first time.
    """

    probe_interval_ms = models.PositiveIntegerField(default=500, validators=[MinValueValidator(50)])
    probe_timeout_ms = models.PositiveIntegerField(default=400, validators=[MinValueValidator(20)])
    rise = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(1)], help_text="Consecutive good probes before a peer is up."
    )
    fall = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(1)], help_text="Consecutive failed probes before a peer is down."
    )
    flap_window_seconds = models.PositiveIntegerField(default=60)
    flap_max_transitions = models.PositiveSmallIntegerField(
        default=4, help_text="More health changes than this within the window hold the peer out until it is stable."
    )
    fail_back_after_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty: never fail back by itself (non-preemptive)."
    )
    transit_timeout_seconds = models.PositiveIntegerField(default=10, validators=[MinValueValidator(1)])
    max_transit_attempts = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Routes not confirmed within the transit timeout before the session ends as 'transit failed'. "
        "Empty: back to the head of the queue every time.",
    )
    hung_up_grace_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty: sessions whose caller hung up wait for the agent to end them."
    )
    adopt_queued_on_server_failure = models.BooleanField(default=True)
    agent_max_sessions = models.PositiveSmallIntegerField(
        default=2,
        validators=[MinValueValidator(1)],
        help_text="Sessions at once a new agent can take (agents added by the wizard or by Verify and Sync).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "policy"
        constraints = [models.CheckConstraint(condition=Q(id=1), name="failover_policy_singleton")]

    def __str__(self) -> str:
        return "Failover policy"

    @classmethod
    def current(cls) -> Policy:
        policy, _ = cls.objects.get_or_create(id=1)
        return policy
