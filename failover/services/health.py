"""Health transitions of peers, as decided by the monitor's rise/fall counters.

The monitor calls these only when a peer crosses its rise or fall threshold, never on
every probe; probe figures are written in bulk by :func:`peers_record_probes`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from collabadmin import live
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
    lease: LeaseToken | None = None,
) -> SwitchoverResult | None:
    """Record a peer's new health and let its link follow (switch over, go down, restore).

    Compare-and-set: a peer already at ``health`` is left alone and ``None`` returned,
    so a repeated or late report is harmless. ``failed_at`` is when the failure began
    (for the failover event's detection time); ``at`` is when it was decided. With a
    ``lease`` (the monitor's), nothing is written unless that lease is still current.
    """
    if lease is not None and not lease_is_held(lease):
        return None
    peer = Peer.objects.only("server_id", "kind", "name").get(pk=peer_id)
    link_id = Link.objects.values_list("pk", flat=True).get(server_id=peer.server_id, kind=peer.kind)
    lock_link(link_id)  # Link first, then peers: the one lock order of every switchover.
    changed = (
        Peer.objects.filter(pk=peer_id)
        .exclude(health=health)
        .update(health=health, health_changed_at=at, last_error=error[:300])
    )
    if not changed:
        return None
    live.publish("peer.health", {"peer": peer_id, "name": peer.name, "health": health, "error": error})
    reason = f"{peer.name} is {health}" + (f" ({error})" if error else "")
    return link_reconcile(
        link_id=link_id,
        reason=reason,
        failed_at=failed_at if health == Health.DOWN else None,
        detected_at=at,
    )


@dataclass(frozen=True)
class ProbeFigures:
    peer_id: int
    at: datetime
    latency_ms: float | None
    consecutive_successes: int
    consecutive_failures: int
    error: str = ""


def peers_record_probes(figures: Iterable[ProbeFigures]) -> None:
    """Write the latest probe figures of many peers in one bulk update (no state change)."""
    rows = [
        Peer(
            pk=f.peer_id,
            last_probe_at=f.at,
            last_latency_ms=f.latency_ms,
            consecutive_successes=f.consecutive_successes,
            consecutive_failures=f.consecutive_failures,
        )
        for f in figures
    ]
    if rows:
        Peer.objects.bulk_update(
            rows, ["last_probe_at", "last_latency_ms", "consecutive_successes", "consecutive_failures"], batch_size=500
        )
