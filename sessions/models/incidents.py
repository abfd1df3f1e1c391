"""What was open on a server when a failure struck: the incident report's sessions."""

from __future__ import annotations

from django.db import models

from sessions.choices import SessionState


class IncidentSession(models.Model):
    """One session open on the server at an incident (``FailoverEvent.failure``), as it was
    the moment before the failure changed anything.

    Written once, in the failure's transaction, by ``sessions.services.incident_snapshot``;
    never edited. What became of the session (kept, re-routed, ended with its reason) is
    read from the session's current row against this snapshot (``console/incidents.py``),
    so it stays true as the session goes on after the report was first read.
    """

    event = models.ForeignKey("failover.FailoverEvent", on_delete=models.CASCADE, related_name="incident_sessions")
    session = models.ForeignKey(
        "collab_sessions.CollaborationSession", on_delete=models.CASCADE, related_name="incident_snapshots"
    )
    state = models.CharField(max_length=16, choices=SessionState.choices, help_text="Its state at the incident.")
    agent = models.ForeignKey(
        "collab_sessions.Agent", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Survives the agent's deletion: who had the session at the incident.
    agent_name = models.CharField(max_length=150, blank=True)
    route_epoch = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["event", "session__queued_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["event", "session"], name="collab_incident_session_once_per_event"),
        ]

    def __str__(self) -> str:
        return f"{self.session_id} {self.state} at event {self.event_id}"
