"""Health bookkeeping shared by everything that is probed: peers and servers."""

from django.db import models

from failover.choices import Health

# The fields the probes write, in the order the admin and the API show them (read-only there).
PROBE_FIELDS = (
    "health",
    "health_changed_at",
    "last_probe_at",
    "last_latency_ms",
    "last_error",
    "consecutive_successes",
    "consecutive_failures",
)


class HealthTracked(models.Model):
    """Probe results and the rise/fall counters that debounce them.

    ``health`` flips only after ``rise`` consecutive successes or ``fall`` consecutive
    failures (HAProxy's semantics), so one lost probe does not flap a link.
    """

    health = models.CharField(max_length=16, choices=Health.choices, default=Health.UNKNOWN)
    consecutive_successes = models.PositiveIntegerField(default=0)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_probe_at = models.DateTimeField(null=True, blank=True)
    last_latency_ms = models.FloatField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    health_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
