"""Recording the session samples behind the overview's queue and active-sessions chart."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from common import live
from sessions.choices import SessionState
from sessions.models import CollaborationSession, SessionSample

#: Samples are kept this long; the overview charts the last hour of them.
SAMPLE_RETENTION = timedelta(hours=24)


def session_state_counts() -> dict[str, int]:
    """Queued, in-transit and active sessions of the whole installation: one query."""
    return CollaborationSession.objects.aggregate(
        queued=Count("pk", filter=Q(state=SessionState.QUEUED)),
        in_transit=Count("pk", filter=Q(state=SessionState.IN_TRANSIT)),
        active=Count("pk", filter=Q(state=SessionState.ACTIVE)),
    )


@transaction.atomic
def sample_record(*, now: datetime | None = None) -> SessionSample:
    """Write one sample of the session counts at ``now`` and prune those older than a day.

    Four queries whatever the size: the previous sample, the counts, the insert and one
    ``DELETE``. When the
    counts differ from the previous sample, the administrators' desktops are told
    (``sessions.sampled``) so that the chart moves without waiting for another event.
    """
    now = now or timezone.now()
    previous = SessionSample.objects.filter(at__lt=now).order_by("-at").values("queued", "in_transit", "active").first()
    counts = session_state_counts()
    sample = SessionSample.objects.create(at=now, **counts)
    samples_prune(now=now)
    if previous != counts:
        live.publish("sessions.sampled", {"at": now.isoformat(), **counts})
    return sample


def samples_prune(*, now: datetime | None = None) -> int:
    """Delete the samples older than :data:`SAMPLE_RETENTION`; return how many."""
    cutoff = (now or timezone.now()) - SAMPLE_RETENTION
    deleted, _ = SessionSample.objects.filter(at__lt=cutoff).delete()
    return deleted
