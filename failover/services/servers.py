"""Health transitions of Collaboration Servers: failure ends their work, recovery is recorded."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from collabadmin import live
from failover.choices import AlertKind, AlertSeverity, AuditAction, FailoverKind, Health
from failover.models import FailoverEvent, Server
from failover.services.alerts import alert_clear, alert_raise
from failover.services.audit import audit_record
from failover.services.lease import LeaseToken, lease_is_held

SYSTEM = "system:monitor"


@transaction.atomic
def server_health_changed(
    *,
    server_id: int,
    health: Health,
    at: datetime,
    failed_at: datetime | None = None,
    error: str = "",
    lease: LeaseToken | None = None,
) -> FailoverEvent | None:
    """Record a server's new health; a failure ends its work (seed: no fault tolerance for
    the server itself), a recovery after a failure is recorded. Compare-and-set, so a
    repeated report does nothing. Returns the failover event written, if any.
    """
    from sessions.services.server_failure import end_work_of_failed_server

    if lease is not None and not lease_is_held(lease):
        return None
    server = Server.objects.select_for_update().get(pk=server_id)
    if server.health == health:
        return None
    was_failed = server.failed_at is not None
    server.health, server.health_changed_at, server.last_error = health, at, error[:300]
    event = None
    if health == Health.DOWN:
        server.failed_at = at
        server.save(update_fields=["health", "health_changed_at", "last_error", "failed_at"])
        outcome = end_work_of_failed_server(server=server, at=at)
        event = FailoverEvent.objects.create(
            server=server,
            kind=FailoverKind.SERVER_FAILED,
            reason=f"{server.name} stopped answering /healthz ({error}); {outcome.describe()}"[:300],
            failed_at=failed_at,
            detected_at=at,
            completed_at=timezone.now(),
        )
        audit_record(
            actor=SYSTEM,
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
            actor=SYSTEM,
        )
    else:
        server.failed_at = None
        server.save(update_fields=["health", "health_changed_at", "last_error", "failed_at"])
        if was_failed and health == Health.UP:
            event = FailoverEvent.objects.create(
                server=server,
                kind=FailoverKind.SERVER_RECOVERED,
                reason=f"{server.name} answers again",
                detected_at=at,
                completed_at=timezone.now(),
            )
            alert_clear(server=server, kind=AlertKind.SERVER_FAILED, actor=SYSTEM, reason="server answers again")
    live.publish("server.changed", {"server": server.pk, "name": server.name, "health": health})
    return event
