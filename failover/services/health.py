"""Health transitions of peers, as decided by the monitor's rise/fall counters.

The monitor calls these only when a peer crosses its rise or fall threshold, never on
every probe; probe figures are written in bulk by :func:`peers_record_probes`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

from common import live
from failover import oplog
from failover.choices import Health
from failover.models import Link, Peer
from failover.services.lease import LeaseToken, lease_is_held
from failover.services.switchover import SwitchoverResult, link_reconcile, lock_link


@transaction.atomic
def peer_health_changed(
    *,
    peer_id: int,
    health: Health,
    at: datetime,
    failed_at: datetime | None = None,
    error: str = "",
    detection: str = "",
    lease: LeaseToken | None = None,
) -> SwitchoverResult | None:
    """Record a peer's new health and let its link follow (switch over, go down, restore).

    Compare-and-set: a peer already at ``health`` is left alone and ``None`` returned,
    so a repeated or late report is harmless. ``failed_at`` is when the failure began
    (for the failover event's detection time), ``detection`` how it was noticed (a
    ``Detection``); ``at`` is when it was decided. With a
    ``lease`` (the monitor's), nothing is written unless that lease is still current.
    """
    if lease is not None and not lease_is_held(lease):
        return None
    peer = Peer.objects.only("server_id", "kind", "name").get(pk=peer_id)
    link_id = Link.objects.values_list("pk", flat=True).get(server_id=peer.server_id, kind=peer.kind)
    lock_link(link_id)  # Link first, then peers: the one lock order of every switchover.
    # A Media Blender that went down tells its ICM side again when it is reached again.
    forget_side = {"icm_side_reported_at": None} if health == Health.DOWN else {}
    changed = (
        Peer.objects.filter(pk=peer_id)
        .exclude(health=health)
        .update(health=health, health_changed_at=at, last_error=error[:300], **forget_side)
    )
    if not changed:
        return None
    live.publish("peer.health", {"peer": peer_id, "name": peer.name, "health": health, "error": error})
    oplog.record(
        "peer_health_changed",
        f"peer {peer.name} is {health}" + (f": {error}" if error else ""),
        level=logging.WARNING if health == Health.DOWN else logging.INFO,
        peer=peer.name,
        peer_kind=peer.kind,
        health=health,
        error=error or None,
        detection=detection or None,
    )
    reason = f"{peer.name} is {health}" + (f" ({error})" if error else "")
    return link_reconcile(
        link_id=link_id,
        reason=reason,
        failed_at=failed_at if health == Health.DOWN else None,
        detected_at=at,
        detection=detection if health == Health.DOWN else "",
    )


@dataclass(frozen=True)
class ProbeFigures:
    peer_id: int
    at: datetime
    latency_ms: float | None
    consecutive_successes: int
    consecutive_failures: int
    error: str = ""


FIGURE_FIELDS = ("last_probe_at", "last_latency_ms", "consecutive_successes", "consecutive_failures")


def peers_record_probes(figures: Iterable[ProbeFigures]) -> None:
    """Write the latest probe figures of many peers (no state change) with one statement
    run for every row (``executemany``). ``bulk_update`` built a CASE expression per field
    and row: at 4,000 peers that was a third of the monitor's CPU."""
    fields = [Peer._meta.get_field(name) for name in FIGURE_FIELDS]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    # Only the model's own (quoted) names go into the text; every value is a parameter.
    table, pk = quote(Peer._meta.db_table), quote(Peer._meta.pk.column)
    sql = f"UPDATE {table} SET {assignments} WHERE {pk} = %s"  # noqa: S608
    rows = [
        [
            field.get_db_prep_save(value, connection)
            for field, value in zip(
                fields, (f.at, f.latency_ms, f.consecutive_successes, f.consecutive_failures), strict=True
            )
        ]
        + [f.peer_id]
        for f in figures
    ]
    if rows:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(sql, rows)
