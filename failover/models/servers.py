"""A Collaboration Server: a node of this product, with its two peer pairs."""

from __future__ import annotations

from django.db import models

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
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_healthy(self) -> bool:
        return self.health == Health.UP

    @property
    def is_degraded(self) -> bool:
        return self.degraded_since is not None
