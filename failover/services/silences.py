"""Reading what is silenced (a server's maintenance window) and so notifies no one.

Apart from ``failover.services.alert_actions``, which starts and ends silences, because
the alerts service asks it (through notifications) and alert_actions reads the alerts
service: one direction only.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from failover.models import Alert, ServerSilence


def active_silences(at: datetime | None = None) -> QuerySet[ServerSilence]:
    """The silences in force at ``at`` (now by default): started, not over, not ended early."""
    at = at or timezone.now()
    return ServerSilence.objects.filter(starts_at__lte=at, ends_at__gt=at).filter(
        Q(ended_at__isnull=True) | Q(ended_at__gt=at)
    )


def server_silence(server_id: int, at: datetime | None = None) -> ServerSilence | None:
    """The server's silence in force at ``at`` (now by default), if any."""
    return active_silences(at).filter(server_id=server_id).order_by("-ends_at").first()


def silenced_q(at: datetime | None = None, server_ref: str = "server_id") -> Q:
    """A filter for rows whose server (the column ``server_ref`` names: ``"pk"`` on the
    servers themselves) is silenced at ``at``."""
    return Q(Exists(active_silences(at).filter(server_id=OuterRef(server_ref))))


def alert_is_silenced(alert: Alert, at: datetime | None = None) -> bool:
    """Whether ``alert`` must notify no one at ``at`` (now by default): its server is in a
    maintenance window then. Ask it when the notification is due (raised, cleared)."""
    return server_silence(alert.server_id, at) is not None


def alerts_to_notify(alerts: QuerySet[Alert] | None = None, at: datetime | None = None) -> QuerySet[Alert]:
    """``alerts`` (every alert by default) less those silenced at ``at``: the ones a
    notification may be sent for. Acknowledged alerts stay in: that they clear is news."""
    alerts = Alert.objects.all() if alerts is None else alerts
    return alerts.exclude(silenced_q(at))
