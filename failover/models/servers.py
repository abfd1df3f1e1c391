"""A Collaboration Server: a node of this product, with its two peer pairs."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from failover.choices import Health, ServerRole
from failover.models.health import HealthTracked


class Server(HealthTracked):
    """One Collaboration Server. Routing servers stand behind the director.

    ``base_url`` is where its own process answers ``/healthz``; it is probed like a peer.
    """

    name = models.SlugField(max_length=64, unique=True)
    role = models.CharField(max_length=16, choices=ServerRole.choices, default=ServerRole.ROUTING)
    base_url = models.URLField(blank=True, help_text="Where this server's process answers /healthz.")
    description = models.CharField(max_length=200, blank=True)
    failed_at = models.DateTimeField(
        null=True, blank=True, help_text="When it was last declared failed; cleared when it recovers."
    )
    # Up but slow: its node answers late or keeps requests waiting. A degraded server keeps
    # its agents and sessions; the director sends new callers elsewhere while it can.
    degraded_since = models.DateTimeField(
        null=True, blank=True, help_text="Since when it is up but slow (degraded); empty when it is not."
    )
    degraded_reason = models.CharField(max_length=300, blank=True)
    # Planned maintenance: a draining server takes no new sessions and hands its queue on;
    # its active sessions run to their end or to ``drain_deadline``. A drained server that
    # stops is not a failure (failover/services/servers.py).
    drain_started_at = models.DateTimeField(
        null=True, blank=True, help_text="Since when it is draining (planned maintenance); empty when it is not."
    )
    # db_default: the previous release, still running during a rolling upgrade, inserts
    # servers without this column.
    drain_reason = models.CharField(max_length=300, blank=True, default="", db_default="")
    drain_deadline = models.DateTimeField(
        null=True, blank=True, help_text="When its remaining sessions end (server_maintenance); empty: no deadline."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(drain_started_at__isnull=True, drain_reason="", drain_deadline__isnull=True)
                | (Q(drain_started_at__isnull=False) & ~Q(drain_reason="")),
                name="failover_server_drain_has_reason",
                violation_error_message="A draining server needs a reason; one not draining has no deadline.",
            ),
            models.CheckConstraint(
                condition=Q(drain_deadline__isnull=True) | Q(drain_deadline__gte=models.F("drain_started_at")),
                name="failover_server_drain_deadline_after_start",
                violation_error_message="A drain's deadline cannot be before the drain started.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_healthy(self) -> bool:
        return self.health == Health.UP

    @property
    def is_degraded(self) -> bool:
        return self.degraded_since is not None

    @property
    def is_draining(self) -> bool:
        return self.drain_started_at is not None
