"""Alerts shown to every administrator until they are cleared."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from failover.choices import AlertKind, AlertSeverity


class Alert(models.Model):
    """An open alert stays until its cause is gone (for example a verify with no differences).

    At most one open alert of a kind per server, or per link for the alerts about a link
    (link down, pair without redundancy, Media Blender without ICM: a server has two links,
    and both can be down at once): raising it again refreshes the open one.
    """

    server = models.ForeignKey("failover.Server", on_delete=models.CASCADE, related_name="alerts")
    link = models.ForeignKey(
        "failover.Link",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="alerts",
        help_text="The link the alert is about; empty for an alert about the whole server.",
    )
    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    severity = models.CharField(max_length=16, choices=AlertSeverity.choices, default=AlertSeverity.WARNING)
    message = models.CharField(max_length=300)
    raised_at = models.DateTimeField()
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    clear_reason = models.CharField(max_length=300, blank=True)
    # Acknowledged: a person has seen it and is on it. It stays acknowledged while it is
    # raised again (refreshed); once cleared, a new occurrence is a new, unacknowledged row.
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Survives the user's deletion (``acknowledged_by`` becomes empty): the audit's label.
    acknowledged_by_name = models.CharField(max_length=150, blank=True)
    acknowledge_note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-raised_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["server", "kind"],
                condition=Q(cleared_at__isnull=True, link__isnull=True),
                name="failover_alert_one_open_per_server_and_kind",
            ),
            models.UniqueConstraint(
                fields=["link", "kind"],
                condition=Q(cleared_at__isnull=True, link__isnull=False),
                name="failover_alert_one_open_per_link_and_kind",
            ),
            # Who, when and why are recorded together, or not at all.
            models.CheckConstraint(
                condition=(
                    Q(acknowledged_at__isnull=True, acknowledged_by__isnull=True)
                    & Q(acknowledged_by_name="", acknowledge_note="")
                )
                | (Q(acknowledged_at__isnull=False) & ~Q(acknowledged_by_name="") & ~Q(acknowledge_note="")),
                name="failover_alert_acknowledged_together",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.server}: {self.message}"

    @property
    def is_open(self) -> bool:
        return self.cleared_at is None

    @property
    def is_acknowledged(self) -> bool:
        return self.acknowledged_at is not None


class ServerSilence(models.Model):
    """A maintenance window: the server's alerts notify no one from ``starts_at`` until
    ``ends_at`` (it ends by itself), or until ``ended_at`` when someone ends it early.

    Alerts are still raised, cleared and shown while silenced; only notifications stop
    (``failover.services.alert_actions.alert_is_silenced``). One window at a time per
    server: silencing again replaces the current one (the service locks the server).
    """

    server = models.ForeignKey("failover.Server", on_delete=models.CASCADE, related_name="silences")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.CharField(max_length=300)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_by_name = models.CharField(max_length=150)
    ended_at = models.DateTimeField(null=True, blank=True, help_text="Set when ended early.")
    ended_by_name = models.CharField(max_length=150, blank=True)
    end_note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-starts_at", "-id"]
        indexes = [models.Index(fields=["server", "ends_at"], name="failover_silence_server_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(ends_at__gt=F("starts_at")), name="failover_silence_ends_after_start"),
            models.CheckConstraint(condition=~Q(reason=""), name="failover_silence_has_reason"),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True, ended_by_name="")
                | Q(ended_at__isnull=False, ended_at__gte=F("starts_at")) & ~Q(ended_by_name=""),
                name="failover_silence_ended_early_together",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.server} silenced until {self.ends_at:%Y-%m-%d %H:%M}"

    @property
    def until(self) -> datetime:
        """When it stops (or stopped) silencing: its end, or the moment it was ended early."""
        return self.ended_at if self.ended_at is not None else self.ends_at

    def covers(self, at: datetime) -> bool:
        return self.starts_at <= at < self.until
