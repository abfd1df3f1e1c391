"""Verify and Sync runs: compare with the ICM, plan, apply what was approved, report."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from failover.choices import SYNC_RUN_BUSY_STATES, SyncRunState


class SyncRun(models.Model):
    """One Verify (and optionally Sync) run for one server.

    ``plan`` holds the differences found, one row each with its proposed direction and
    approval; ``local_fingerprint`` and ``icm_version`` pin what the plan was made from,
    so a stale plan can be refused. The database allows one busy run per server.
    """

    server = models.ForeignKey("failover.Server", on_delete=models.CASCADE, related_name="sync_runs")
    state = models.CharField(max_length=16, choices=SyncRunState.choices, default=SyncRunState.VERIFYING)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    icm_version = models.BigIntegerField(null=True, blank=True)
    local_fingerprint = models.CharField(max_length=64, blank=True)
    aw_epoch = models.PositiveBigIntegerField(null=True, blank=True)
    plan = models.JSONField(default=list, blank=True)
    report = models.JSONField(default=dict, blank=True)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["server"],
                condition=Q(state__in=SYNC_RUN_BUSY_STATES),
                name="failover_syncrun_one_busy_per_server",
                violation_error_message="A Verify and Sync run is already in progress for this server.",
            ),
        ]

    def __str__(self) -> str:
        return f"Verify and Sync on {self.server} ({self.get_state_display()})"
