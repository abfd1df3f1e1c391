"""Health transitions of Collaboration Servers: failure ends their work, recovery is recorded."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from common import live
from common.actors import MONITOR
from failover import hooks, oplog
from failover.choices import AlertKind, AlertSeverity, AuditAction, FailoverKind, Health
from failover.models import FailoverEvent, Server
from failover.services.alerts import alert_clear, alert_raise
from failover.services.audit import audit_record
from failover.services.drain import drain_payload
from failover.services.lease import LeaseToken, lease_is_held


@transaction.atomic
def server_health_changed(
    *,
    server_id: int,
    health: Health,
    at: datetime,
    failed_at: datetime | None = None,
    error: str = "",
    detection: str = "",
    lease: LeaseToken | None = None,
) -> FailoverEvent | None:
    """Record a server's new health; a failure ends its work (a server has no standby of its
    own: docs/product.md, 'Collaboration Server failure'), a recovery after a failure is recorded. Compare-and-set, so a
    repeated report does nothing. Returns the failover event written, if any.
    """
    if lease is not None and not lease_is_held(lease):
        return None
    server = Server.objects.select_for_update().get(pk=server_id)
    if server.health == health:
        return None
    was_failed = server.failed_at is not None
    server.health, server.health_changed_at, server.last_error = health, at, error[:300]
    if health == Health.DOWN and server.is_draining:
        event = _server_stopped(server, at=at, error=error, detection=detection)
    elif health == Health.DOWN:
        event = _server_failed(server, at=at, failed_at=failed_at, error=error, detection=detection)
    else:
        event = _server_back(server, at=at, recovered=was_failed and health == Health.UP)
    live.publish("server.changed", drain_payload(server))
    _log_health(server, event, error=error)
    return event


def _server_failed(
    server: Server, *, at: datetime, failed_at: datetime | None, error: str, detection: str
) -> FailoverEvent:
    """The failure: its work ended, the event with its figures, audit and the alert."""
    server.failed_at = at
    was_degraded = server.is_degraded
    # Failed supersedes degraded: the degraded alert gives way to the failure's.
    server.degraded_since, server.degraded_reason = None, ""
    fields = ["health", "health_changed_at", "last_error", "failed_at", "degraded_since", "degraded_reason"]
    server.save(update_fields=fields)
    if was_degraded:
        alert_clear(server=server, kind=AlertKind.SERVER_DEGRADED, actor=MONITOR, reason="server failed")
    # Noted before the work ends: the incident report says what became of each session.
    work = hooks.work_at_failure(server=server)
    outcome = hooks.server_failed(server=server, at=at)
    event = FailoverEvent.objects.create(
        server=server,
        kind=FailoverKind.SERVER_FAILED,
        reason=f"{server.name} failed: {error}; {outcome.describe()}"[:300],
        failed_at=failed_at,
        detected_at=at,
        completed_at=timezone.now(),
        detection=detection,
        failure=True,
    )
    work.record(event)
    audit_record(
        actor=MONITOR,
        action=AuditAction.SERVER_FAILED,
        target=server,
        reason=error,
        before={"health": "up"},
        after={"health": "down", **outcome.as_dict()},
    )
    alert_raise(
        server=server,
        kind=AlertKind.SERVER_FAILED,
        severity=AlertSeverity.CRITICAL,
        message=f"Server {server.name} failed: {outcome.describe()}",
        actor=MONITOR,
    )
    return event


def _server_stopped(server: Server, *, at: datetime, error: str, detection: str) -> FailoverEvent:
    """A drained server that stops is planned maintenance, not a failure: its health is down
    (the director skips it anyway), but nothing of its work ends and no alert is raised.
    Sessions still open on it wait for it to come back (or for the drain's deadline)."""
    server.save(update_fields=["health", "health_changed_at", "last_error"])
    event = FailoverEvent.objects.create(
        server=server,
        kind=FailoverKind.SERVER_STOPPED,
        reason=f"{server.name} stopped while drained ({server.drain_reason}): {error}"[:300],
        detected_at=at,
        completed_at=timezone.now(),
        detection=detection,
    )
    audit_record(
        actor=MONITOR,
        action=AuditAction.SERVER_STOPPED,
        target=server,
        reason=f"stopped while drained: {error}",
        before={"health": "up"},
        after={"health": "down", "draining": True},
    )
    return event


def _server_back(server: Server, *, at: datetime, recovered: bool) -> FailoverEvent | None:
    """Up (or unknown) again; after a failure, the recovery is an event and clears the alert."""
    server.failed_at = None
    server.save(update_fields=["health", "health_changed_at", "last_error", "failed_at"])
    if not recovered:
        return None
    event = FailoverEvent.objects.create(
        server=server,
        kind=FailoverKind.SERVER_RECOVERED,
        reason=f"{server.name} answers again",
        detected_at=at,
        completed_at=timezone.now(),
    )
    alert_clear(server=server, kind=AlertKind.SERVER_FAILED, actor=MONITOR, reason="server answers again")
    return event


def _log_health(server: Server, event: FailoverEvent | None, *, error: str) -> None:
    """The server's health change as one structured line; a failure with its figures."""
    failed = server.health == Health.DOWN and not server.is_draining
    stopped = server.health == Health.DOWN and server.is_draining
    if failed and event:
        event_name, text = "server_failed", f"failed: {event.reason}"
    elif stopped:
        event_name, text = "server_stopped", "stopped while drained"
    else:
        event_name, text = "server_health_changed", f"is {server.health}"
    oplog.record(
        event_name,
        f"server {server.name} {text}",
        level=logging.ERROR if failed else logging.INFO,
        server=server.name,
        health=server.health,
        error=error or None,
        detection=(event.detection or None) if event else None,
        detected_at_once=event.detected_at_once if event and event.detection else None,
        detection_ms=oplog.ms(event.detection_seconds) if event else None,
        switchover_ms=oplog.ms(event.switchover_seconds) if event else None,
    )


@transaction.atomic
def server_degraded_changed(
    *, server_id: int, degraded: bool, at: datetime, reason: str = "", lease: LeaseToken | None = None
) -> bool:
    """Mark a server degraded (up but slow: its node answers late or keeps requests
    waiting) or no longer degraded. Nothing of its work changes: its agents and sessions
    go on; the director sends new callers to another healthy server while one exists.

    Raises (or clears) the *server degraded* warning alert, audits, and tells the desktops.
    Compare-and-set like :func:`server_health_changed`: a server already in that state, or
    one that is not up (a failed server is not "degraded"), is left alone and False
    returned. With a ``lease`` (the monitor's), nothing is written unless it is current.
    """
    if lease is not None and not lease_is_held(lease):
        return False
    server = Server.objects.select_for_update().get(pk=server_id)
    if server.is_degraded == degraded or (degraded and server.health != Health.UP):
        return False
    before = {"degraded_since": server.degraded_since.isoformat() if server.degraded_since else None}
    server.degraded_since, server.degraded_reason = (at, reason[:300]) if degraded else (None, "")
    server.save(update_fields=["degraded_since", "degraded_reason"])
    audit_record(
        actor=MONITOR,
        action=AuditAction.SERVER_DEGRADED if degraded else AuditAction.SERVER_DEGRADED_CLEARED,
        target=server,
        reason=reason,
        before=before,
        after={"degraded_since": at.isoformat() if degraded else None},
    )
    if degraded:
        alert_raise(
            server=server,
            kind=AlertKind.SERVER_DEGRADED,
            severity=AlertSeverity.WARNING,
            message=f"Server {server.name} is slow (degraded): {reason}. New callers go to healthy servers first.",
            actor=MONITOR,
        )
    else:
        alert_clear(server=server, kind=AlertKind.SERVER_DEGRADED, actor=MONITOR, reason=reason)
    live.publish(
        "server.changed", {"server": server.pk, "name": server.name, "health": server.health, "degraded": degraded}
    )
    oplog.record(
        "server_degraded" if degraded else "server_degraded_cleared",
        f"server {server.name} " + (f"is degraded: {reason}" if degraded else f"is no longer degraded ({reason})"),
        level=logging.WARNING if degraded else logging.INFO,
        server=server.name,
        reason=reason,
    )
    return True
