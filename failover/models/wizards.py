"""Administrative wizard runs: multi-step writes to this server and the ICM."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from failover.choices import WizardKind, WizardState


class WizardRun(models.Model):
    """One run of a wizard, with its step log.

    ``aw_epoch`` is the Admin Workstation link's epoch when the run started: a
    switchover raises it, which is how an interrupted run is recognised.
    """

    server = models.ForeignKey("failover.Server", on_delete=models.CASCADE, related_name="wizard_runs")
    kind = models.CharField(max_length=32, choices=WizardKind.choices)
    state = models.CharField(max_length=16, choices=WizardState.choices, default=WizardState.RUNNING)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    params = models.JSONField(default=dict, blank=True)
    step_log = models.JSONField(default=list, blank=True)
    current_step = models.PositiveSmallIntegerField(default=0)
    aw_epoch = models.PositiveBigIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(state=WizardState.RUNNING, finished_at__isnull=True)
                | (~Q(state=WizardState.RUNNING) & Q(finished_at__isnull=False)),
                name="failover_wizard_finished_iff_not_running",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.server} ({self.get_state_display()})"
