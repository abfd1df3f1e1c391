"""Database leases: which node runs a singleton job (the health poller) right now."""

from __future__ import annotations

from django.db import models


class Lease(models.Model):
    """A named lease held by one node until ``expires_at``; taken over once it expires.

    ``epoch`` rises with every change of holder, so a holder that lost its lease while
    paused finds out before it writes.
    """

    name = models.SlugField(max_length=64, unique=True)
    holder = models.CharField(max_length=150, blank=True)
    epoch = models.PositiveBigIntegerField(default=0)
    expires_at = models.DateTimeField(null=True, blank=True)
    renewed_at = models.DateTimeField(null=True, blank=True)
    holder_late_ms = models.FloatField(
        default=0,
        help_text="How late the holder's event loop ran at worst lately, as it said with its last renewal.",
    )

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder or 'nobody'}"
