"""Raising and clearing the alerts every administrator sees."""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from common import live
from common.actors import Actor
from failover import oplog
from failover.choices import AlertKind, AlertSeverity, AuditAction, NotificationEvent
from failover.models import Alert, Link, Server
from failover.services.audit import audit_record
from failover.services.notifications import notifications_queue


def alert_event(alert: Alert) -> dict:
    """The data of the ``alert.changed`` live event, whatever changed about the alert."""
    return {
        "id": alert.pk,
        "server": alert.server.name,
        "link": alert.link_id,
        "kind": alert.kind,
        "severity": alert.severity,
        "message": alert.message,
        "open": alert.is_open,
        "acknowledged": alert.is_acknowledged,
        "acknowledged_by": alert.acknowledged_by_name,
        "acknowledged_at": alert.acknowledged_at.isoformat() if alert.acknowledged_at else None,
    }


@transaction.atomic
def alert_raise(
    *,
    server: Server,
    kind: AlertKind,
    message: str,
    severity: AlertSeverity,
    actor: Actor,
    link: Link | None = None,
) -> Alert:
    """Open the alert, or refresh the one already open (the database allows one per kind
    and server, or per kind and ``link`` for an alert about a link)."""
    now = timezone.now()
    alert = _open_alerts(server, kind, link).first()
    if alert is None:
        try:
            with transaction.atomic():
                alert = Alert.objects.create(
                    server=server, link=link, kind=kind, message=message, severity=severity, raised_at=now
                )
        except IntegrityError:
            # Raised by someone else between our read and insert: refresh theirs.
            alert = _open_alerts(server, kind, link).get()
        else:
            audit_record(actor=actor, action=AuditAction.ALERT_RAISED, target=alert, after={"message": message})
            # Only a new alert notifies: raising an open one again refreshes it, quietly.
            notifications_queue(alert, NotificationEvent.RAISED)
    alert.message, alert.severity = message, severity
    alert.save(update_fields=["message", "severity"])
    live.publish("alert.changed", alert_event(alert))
    _log(alert, "alert_raised", f"alert raised on {server.name}: {message}")
    return alert


@transaction.atomic
def alert_clear(
    *, server: Server, kind: AlertKind, actor: Actor, reason: str, link: Link | None = None
) -> Alert | None:
    """Close the open alert of this kind (of ``link``, for an alert about a link), if any; returns it."""
    alert = _open_alerts(server, kind, link).first()
    if alert is None:
        return None
    alert.cleared_at = timezone.now()
    alert.cleared_by = actor if not isinstance(actor, str | None) else None
    alert.clear_reason = reason[:300]
    alert.save(update_fields=["cleared_at", "cleared_by", "clear_reason"])
    audit_record(actor=actor, action=AuditAction.ALERT_CLEARED, target=alert, reason=reason)
    notifications_queue(alert, NotificationEvent.CLEARED)
    live.publish("alert.changed", alert_event(alert))
    _log(alert, "alert_cleared", f"alert cleared on {server.name}: {alert.message} ({reason})", reason=reason)
    return alert


def _open_alerts(server: Server, kind: AlertKind, link: Link | None) -> QuerySet[Alert]:
    # ``link=None`` reads "link IS NULL": a server-wide alert, never one of its links'.
    return (
        Alert.objects.select_for_update(of=("self",))
        .select_related("server")
        .filter(server=server, kind=kind, link=link, cleared_at__isnull=True)
    )


def _log(alert: Alert, event: str, message: str, **extra: str) -> None:
    # A critical alert raised is an error in the process logs; everything else is news.
    critical = event == "alert_raised" and alert.severity == AlertSeverity.CRITICAL
    oplog.record(
        event,
        message,
        level=logging.ERROR if critical else logging.WARNING if event == "alert_raised" else logging.INFO,
        alert=alert.kind,
        severity=alert.severity,
        server=alert.server.name,
        **extra,
    )
