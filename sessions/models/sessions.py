"""A collaboration session: a caller's request, from the queue to its end."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from sessions.choices import ROUTED_STATES, EndReason, PhoneLeg, SessionState


def keep_open_sessions_grouped(
    collector: models.deletion.Collector, field: models.Field, sub_objs: models.QuerySet, using: str
) -> None:
    """``on_delete`` of a session's skill group: an ended session forgets it (history
    keeps the audit entries), an open one blocks the deletion. Setting it to nothing would
    turn a Billing caller into an "any agent" caller, routed to whoever is free."""
    still_open = list(sub_objs.exclude(state=SessionState.ENDED))
    if still_open:
        raise models.ProtectedError(
            f"This skill group is still asked for by {len(still_open)} open session(s): "
            "it can be deleted once they have ended.",
            still_open,
        )
    models.SET_NULL(collector, field, sub_objs, using)


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
        "collab_sessions.SkillGroup",
        on_delete=keep_open_sessions_grouped,
        null=True,
        blank=True,
        related_name="sessions",
    )
    # The caller asked for any available agent. An open session either names its skill
    # group or says this (database constraint): "no skill group" is never an accident of a
    # lost mapping or a deleted group, which would let anyone take it.
    any_skill_group = models.BooleanField(
        default=False, help_text="The caller asked for any available agent rather than a skill group."
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
    # Which Media Blender set the phone leg up, under which link epoch (its connection):
    # once the link moves past that epoch, that MB is no longer heard and the phone state
    # becomes unknown (sessions/services/phone_tracking.py).
    phone_peer = models.ForeignKey("failover.Peer", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    phone_epoch = models.PositiveBigIntegerField(null=True, blank=True)
    phone_unknown_at = models.DateTimeField(null=True, blank=True)
    # Why the phone state is unknown, in words shown to the agent and the administrator.
    phone_note = models.CharField(max_length=300, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=32, choices=EndReason.choices, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Why, in words, shown to the agent: the administrator's reason, or what the system
    # found (say, no surviving server has the session's skill group).
    end_note = models.CharField(max_length=300, blank=True)

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
                condition=Q(state=SessionState.ENDED)
                | (Q(skill_group__isnull=False) & Q(any_skill_group=False))
                | (Q(skill_group__isnull=True) & Q(any_skill_group=True)),
                name="collab_session_open_has_skill_group_or_any",
                violation_error_message="An open session names its skill group, or says that any agent will do.",
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
