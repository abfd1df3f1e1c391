"""Planned maintenance of a Collaboration Server: drain it, and take it out of drain.

A draining server takes no new sessions (the director skips it, its nodes' ``/readyz``
answers 503 so the load balancer stops sending), its queue is handed to a surviving
routing server in order, its agents are asked to finish, and its active sessions run to
their end or to the administrator's deadline (then end with ``server_maintenance``, by the
beat's ``sessions.drain_deadlines``). Stopping a drained server is not a failure
(failover/services/servers.py). See docs/operations.md, 'Planned maintenance'.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from common import live
from common.actors import Actor
from failover import hooks, oplog
from failover.choices import AuditAction
from failover.models import Server
from failover.services.audit import audit_record, check_reason

# A deadline longer than a day is a mistake (minutes typed as seconds, say), not a plan.
MAX_DEADLINE_MINUTES = 24 * 60


def drain_payload(server: Server) -> dict:
    """What desktops hear of a server's drain (``server.changed``)."""
    return {
        "server": server.pk,
        "name": server.name,
        "health": server.health,
        "degraded": server.is_degraded,
        "draining": server.is_draining,
        "drain_reason": server.drain_reason,
        "drain_deadline": server.drain_deadline.isoformat() if server.drain_deadline else None,
    }


def _check_deadline(minutes: int | None) -> None:
    if minutes is not None and not 1 <= minutes <= MAX_DEADLINE_MINUTES:
        raise ValidationError({"deadline_minutes": f"Give between 1 and {MAX_DEADLINE_MINUTES} minutes, or none."})


@transaction.atomic
def server_drain(*, server_id: int, actor: Actor, reason: str, deadline_minutes: int | None = None) -> Server:
    """Put a server in drain: no new sessions, its queue handed on, its agents told.

    With ``deadline_minutes``, sessions still open then end with ``server_maintenance``.
    Draining a draining server changes nothing but its deadline (when one is given).
    Audited with the reason; pushed live."""
    reason = check_reason(reason)
    if not reason:
        raise ValidationError({"reason": "Say why the server is drained."})
    _check_deadline(deadline_minutes)
    server = Server.objects.select_for_update().get(pk=server_id)
    before = _state(server)
    now = timezone.now()
    if not server.is_draining:
        server.drain_started_at, server.drain_reason = now, reason
    elif deadline_minutes is None:
        return server
    server.drain_deadline = now + timedelta(minutes=deadline_minutes) if deadline_minutes is not None else None
    server.save(update_fields=["drain_started_at", "drain_reason", "drain_deadline"])
    moved = hooks.server_drain_changed(server=server, actor=actor, reason=reason)
    audit_record(
        actor=actor,
        action=AuditAction.SERVER_DRAINED,
        target=server,
        reason=reason,
        before=before,
        after={**_state(server), "queued_moved": moved},
    )
    _announce(server, f"is draining: {reason}; {moved} queued sessions handed on", reason=reason)
    return server


@transaction.atomic
def server_undrain(*, server_id: int, actor: Actor, reason: str) -> Server:
    """Take a server out of drain: it takes new sessions again. Idempotent."""
    reason = check_reason(reason)
    if not reason:
        raise ValidationError({"reason": "Say why the server takes sessions again."})
    server = Server.objects.select_for_update().get(pk=server_id)
    if not server.is_draining:
        return server
    before = _state(server)
    server.drain_started_at, server.drain_reason, server.drain_deadline = None, "", None
    server.save(update_fields=["drain_started_at", "drain_reason", "drain_deadline"])
    hooks.server_drain_changed(server=server, actor=actor, reason=reason)
    audit_record(
        actor=actor,
        action=AuditAction.SERVER_UNDRAINED,
        target=server,
        reason=reason,
        before=before,
        after=_state(server),
    )
    _announce(server, f"takes sessions again: {reason}", reason=reason)
    return server


def _state(server: Server) -> dict:
    return {
        "draining": server.is_draining,
        "drain_deadline": server.drain_deadline.isoformat() if server.drain_deadline else None,
    }


def _announce(server: Server, text: str, *, reason: str) -> None:
    live.publish("server.changed", drain_payload(server))
    oplog.record(
        "server_drained" if server.is_draining else "server_undrained",
        f"server {server.name} {text}",
        level=logging.INFO,
        server=server.name,
        reason=reason,
        deadline=server.drain_deadline.isoformat() if server.drain_deadline else None,
    )
