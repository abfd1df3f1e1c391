"""A peer: one Media Blender or Admin Workstation a server can connect to."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from failover.choices import Health, IcmSide, PeerConnection, PeerKind, PeerPriority
from failover.models.health import HealthTracked


class Peer(HealthTracked):
    """One end of a server's pair of peers of one kind.

    The pair is (server, kind): at most two peers (priority 1 and 2) and, enforced by the
    database, at most one of them ``connected``. ``connected_epoch`` is the link epoch
    under which it was connected: a write carrying any other epoch is stale (fencing).
    """

    server = models.ForeignKey("failover.Server", on_delete=models.CASCADE, related_name="peers")
    kind = models.CharField(max_length=32, choices=PeerKind.choices)
    name = models.SlugField(max_length=64)
    host = models.CharField(max_length=255, default="127.0.0.1")
    port = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(65535)])
    priority = models.PositiveSmallIntegerField(choices=PeerPriority.choices, default=PeerPriority.PRIMARY)
    connection = models.CharField(max_length=16, choices=PeerConnection.choices, default=PeerConnection.STANDBY)
    connected_epoch = models.PositiveBigIntegerField(null=True, blank=True)
    connected_at = models.DateTimeField(null=True, blank=True)
    in_maintenance = models.BooleanField(default=False)
    maintenance_reason = models.CharField(max_length=300, blank=True)
    maintenance_since = models.DateTimeField(null=True, blank=True)
    icm_side = models.CharField(
        max_length=1, choices=IcmSide.choices, blank=True, help_text="Media Blender only: its own ICM connection."
    )
    # Empty until the Media Blender has told its side since it last came up: a blank side
    # is then "not known yet", not "no ICM connection" (which raises an alert).
    icm_side_reported_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the Media Blender last reported its ICM side (empty: not since it came up).",
    )

    class Meta:
        ordering = ["server__name", "kind", "priority"]
        constraints = [
            models.UniqueConstraint(
                fields=["server", "kind"],
                condition=Q(connection=PeerConnection.CONNECTED),
                name="failover_peer_one_connected_per_pair",
                violation_error_message="Only one peer of a pair can be connected.",
            ),
            models.UniqueConstraint(
                fields=["server", "kind", "priority"],
                name="failover_peer_unique_priority_per_pair",
                violation_error_message="A pair has one primary and one secondary peer.",
            ),
            models.UniqueConstraint(fields=["server", "name"], name="failover_peer_unique_name_per_server"),
            models.CheckConstraint(
                condition=Q(priority__in=[PeerPriority.PRIMARY, PeerPriority.SECONDARY]),
                name="failover_peer_priority_primary_or_secondary",
            ),
            models.CheckConstraint(
                condition=~Q(connection=PeerConnection.CONNECTED)
                | Q(connected_epoch__isnull=False, in_maintenance=False),
                name="failover_peer_connected_has_epoch_and_no_maintenance",
                violation_error_message="A connected peer needs an epoch and cannot be in maintenance.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.server.name}/{self.name}"

    def clean(self) -> None:
        if self.icm_side and self.kind != PeerKind.MEDIA_BLENDER:
            raise ValidationError({"icm_side": "Only a Media Blender reports an ICM side."})

    @property
    def is_connected(self) -> bool:
        return self.connection == PeerConnection.CONNECTED

    @property
    def is_eligible(self) -> bool:
        """Healthy and not in maintenance: may be connected."""
        return self.health == Health.UP and not self.in_maintenance

    @property
    def display_state(self) -> str:
        """What the topology shows: connected / standby / down / maintenance."""
        if self.in_maintenance:
            return "maintenance"
        if self.is_connected:
            return "connected"
        if self.health == Health.DOWN:
            return "down"
        return "standby"
