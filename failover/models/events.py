"""Failover events: every switchover, link loss and server failure, with its timings."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from failover.choices import INSTANT_DETECTIONS, Detection, FailoverKind


class FailoverEvent(models.Model):
    """One failover, manual or automatic.

    ``failed_at`` is the moment the failure began (connection dropped, or the first
    failed probe of the run that crossed ``fall``), ``detected_at`` when the poller
    declared it, ``completed_at`` when the switchover committed. The durations follow.
    ``detection`` says how the failure was noticed; one seen at once (a reset or refused
    connection) has no detection time: ``failed_at`` equals ``detected_at`` because the
    failure *was* its detection, and a "0.0 ms" would be a figure nobody measured.
    """

    server = models.ForeignKey("failover.Server", on_delete=models.CASCADE, related_name="failover_events")
    link = models.ForeignKey(
        "failover.Link", on_delete=models.CASCADE, null=True, blank=True, related_name="failover_events"
    )
    kind = models.CharField(max_length=32, choices=FailoverKind.choices)
    from_peer = models.ForeignKey("failover.Peer", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    to_peer = models.ForeignKey("failover.Peer", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    epoch = models.PositiveBigIntegerField(null=True, blank=True, help_text="The link's epoch after the change.")
    reason = models.CharField(max_length=300, blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    detected_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    detection = models.CharField(
        max_length=32,
        choices=Detection.choices,
        blank=True,
        help_text="How the failure was noticed; blank for changes that were not failures.",
    )
    # An incident: the change was caused by a failure (a peer that crashed or stalled, a
    # server that failed), not asked for (manual, fail-back) nor planned (maintenance).
    # Each has a report (console/incidents.py) and a snapshot of the sessions open at that
    # moment (sessions.models.IncidentSession).
    failure = models.BooleanField(default=False, help_text="Caused by a failure: an incident with its report.")

    class Meta:
        ordering = ["-detected_at", "-id"]
        indexes = [
            models.Index(fields=["-detected_at"], name="failover_event_recent_idx"),
            models.Index(fields=["server", "failure", "detected_at"], name="failover_event_incident_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.server} at {self.detected_at:%Y-%m-%d %H:%M:%S}"

    @property
    def detected_at_once(self) -> bool:
        """Noticed the moment it happened (no probe had failed before): nothing to measure."""
        return self.detection in INSTANT_DETECTIONS and self.failed_at == self.detected_at

    @property
    def detection_text(self) -> str:
        """What the timeline shows instead of a figure for a failure noticed at once."""
        return f"at once: {self.get_detection_display()}" if self.detected_at_once else ""

    @property
    def detection_seconds(self) -> float | None:
        """Seconds from the failure's start to its detection; None when not measured."""
        if self.failed_at is None or self.detected_at_once:
            return None
        return (self.detected_at - self.failed_at).total_seconds()

    @property
    def switchover_seconds(self) -> float | None:
        if self.completed_at is None:
            return None
        return (self.completed_at - self.detected_at).total_seconds()
