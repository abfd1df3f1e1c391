"""Peer pairs brought up through the real health service, for tests of links and metrics."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from failover.choices import Health
from failover.models import Link, Peer
from failover.services.health import peer_health_changed
from failover.services.switchover import SwitchoverResult


def set_health(peer: Peer, health: Health, *, at: datetime | None = None, **kwargs) -> SwitchoverResult | None:
    """Report a health decision as the monitor would (``at`` defaults to now)."""
    return peer_health_changed(peer_id=peer.pk, health=health, at=at or timezone.now(), **kwargs)


def connected(link: Link) -> list[str]:
    """Names of the link's connected peers (the database allows at most one)."""
    return list(link.peers().filter(connection="connected").values_list("name", flat=True))
