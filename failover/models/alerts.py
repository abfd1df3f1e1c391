"""Alerts shown to every administrator until they are cleared."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

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
        ]

    def __str__(self) -> str:
        return f"{self.server}: {self.message}"

    @property
    def is_open(self) -> bool:
        return self.cleared_at is None
