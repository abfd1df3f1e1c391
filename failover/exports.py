"""The columns of the failover events' and audit history's CSV exports, shared by the
console's export links and the API's ``export`` endpoints so both give the same file:
(header, the cell of one row). Each column reads only what the export's queryset selects
(``select_related``), so an export is one query however many rows it has.
"""

from __future__ import annotations

from common.csv_export import Column

EVENT_COLUMNS: list[Column] = [
    ("id", lambda e: e.pk),
    ("detected_at", lambda e: e.detected_at),
    ("failed_at", lambda e: e.failed_at),
    ("completed_at", lambda e: e.completed_at),
    ("kind", lambda e: e.kind),
    ("failure", lambda e: e.failure),
    ("server", lambda e: e.server.name),
    ("link", lambda e: e.link.kind if e.link_id else ""),
    ("from_peer", lambda e: e.from_peer.name if e.from_peer_id else ""),
    ("to_peer", lambda e: e.to_peer.name if e.to_peer_id else ""),
    ("epoch", lambda e: e.epoch),
    ("actor", lambda e: e.actor.get_username() if e.actor_id else ""),
    ("detection", lambda e: e.detection),
    ("detection_seconds", lambda e: e.detection_seconds),
    ("switchover_seconds", lambda e: e.switchover_seconds),
    ("reason", lambda e: e.reason),
]

AUDIT_COLUMNS: list[Column] = [
    ("id", lambda a: a.pk),
    ("created_at", lambda a: a.created_at),
    ("actor", lambda a: a.actor_name),
    ("action", lambda a: a.action),
    ("object_type", lambda a: a.object_type),
    ("object_id", lambda a: a.object_id),
    ("object", lambda a: a.object_repr),
    ("reason", lambda a: a.reason),
    ("before", lambda a: a.before),
    ("after", lambda a: a.after),
]
