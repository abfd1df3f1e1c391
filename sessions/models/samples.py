"""Session samples: the history behind the overview's queue and active-sessions chart."""

from __future__ import annotations

from django.db import models


class SessionSample(models.Model):
    """How many sessions were queued, in transit and active at ``at`` (all servers).

    Written every 10 s by the ``sessions.record_sample`` beat task; samples older than a
    day are pruned by the same task, so the table stays at about 8,640 rows.
    """

    at = models.DateTimeField(db_index=True)
    queued = models.PositiveIntegerField(default=0)
    in_transit = models.PositiveIntegerField(default=0)
    active = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["at"]
        get_latest_by = "at"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S}: {self.queued} queued, {self.in_transit} in transit, {self.active} active"
