"""A collaboration session: a caller's request, from the queue to its end."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from sessions.choices import ROUTED_STATES, EndReason, PhoneLeg, SessionState


class CollaborationSession(models.Model):
    """One web collaboration between a caller and an agent.

    queued -> in_transit -> active -> ended, with in_transit -> queued when a route is
    not confirmed in time; ``ended`` is final. The database insists that routed sessions
    have an agent and that ended sessions (and only they) have a reason and a time.
    ``route_epoch`` is the Media Blender link epoch the route was asked under.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    server = models.ForeignKey("failover.Server", on_delete=models.PROTECT, related_name="sessions")
    adopted_from = models.ForeignKey(
        "failover.Server", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    skill_group = models.ForeignKey(
        "collab_sessions.SkillGroup", on_delete=models.SET_NULL, null=True, blank=True, related_name="sessions"
    )
    caller_name = models.CharField(max_length=100)
    caller_contact = models.CharField(max_length=200, blank=True, help_text="E-mail or phone number.")
    topic = models.CharField(max_length=200, blank=True)
    state = models.CharField(max_length=16, choices=SessionState.choices, default=SessionState.QUEUED)
    phone_leg = models.CharField(max_length=16, choices=PhoneLeg.choices, default=PhoneLeg.NONE)
    agent = models.ForeignKey(
        "collab_sessions.Agent", on_delete=models.PROTECT, null=True, blank=True, related_name="sessions"
    )
    queued_at = models.DateTimeField(db_index=True)
    routed_at = models.DateTimeField(null=True, blank=True)
    route_epoch = models.PositiveBigIntegerField(null=True, blank=True)
    # Routes of this session that were not confirmed in time (Policy.max_transit_attempts).
    transit_timeouts = models.PositiveSmallIntegerField(default=0)
    activated_at = models.DateTimeField(null=True, blank=True)
    phone_hung_up_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=16, choices=EndReason.choices, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["queued_at"]
        indexes = [models.Index(fields=["server", "state", "queued_at"], name="collab_session_queue_idx")]
        constraints = [
            models.CheckConstraint(
                condition=(Q(state=SessionState.ENDED) & ~Q(end_reason="") & Q(ended_at__isnull=False))
                | (~Q(state=SessionState.ENDED) & Q(end_reason="") & Q(ended_at__isnull=True)),
                name="collab_session_ended_iff_reason_and_time",
                violation_error_message="An ended session needs a reason and a time; an open one has neither.",
            ),
            models.CheckConstraint(
                condition=~Q(state__in=ROUTED_STATES) | Q(agent__isnull=False),
                name="collab_session_routed_has_agent",
                violation_error_message="A session in transit or active needs an agent.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.caller_name} ({self.get_state_display()})"

    @property
    def is_open(self) -> bool:
        return self.state != SessionState.ENDED
