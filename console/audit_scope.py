"""Which audit entries are about one server: the server itself and what belongs to it.

Shared by the timeline's server filter and the incident report's administrators' actions.
"""

from __future__ import annotations

from typing import Any

from django.db.models import CharField, Q, Value
from django.db.models.functions import Cast, Replace

from failover.models import Alert, Link, Peer, Server, SyncRun, WizardRun
from sessions.models import Agent, CollaborationSession

# Audited objects that belong to one server (the server itself is matched by its id).
SERVER_OWNED = (Link, Peer, Alert, Agent, CollaborationSession, WizardRun, SyncRun)


def _key(expression: Any) -> Replace:
    """A primary key as text without dashes: UUIDs read the same in SQLite (32 hex digits)
    and PostgreSQL (dashed), and as ``str(uuid)`` in ``AuditEntry.object_id``."""
    return Replace(Cast(expression, output_field=CharField()), Value("-"), Value(""))


def audit_about_server(server_id: int) -> Q:
    """Audit entries whose target is the server or one of the objects that belong to it."""
    condition = Q(object_type=Server._meta.label_lower, object_id=str(server_id))
    for model in SERVER_OWNED:
        keys = model.objects.filter(server_id=server_id).order_by().annotate(key=_key("pk")).values("key")
        condition |= Q(object_type=model._meta.label_lower, object_key__in=keys)
    return condition
