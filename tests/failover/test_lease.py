"""The monitor's database lease: one holder at a time, taken over after expiry, fenced by epoch."""

from __future__ import annotations

import pytest
from django.utils import timezone

from failover.choices import Health
from failover.models import Lease
from failover.services.health import peer_health_changed
from failover.services.lease import lease_acquire, lease_release, lease_renew

pytestmark = pytest.mark.django_db


def expire(name: str) -> None:
    Lease.objects.filter(name=name).update(expires_at=timezone.now())


def test_only_one_node_holds_the_lease():
    first = lease_acquire(name="monitor", holder="a", ttl_seconds=30)

    assert first is not None
    assert lease_acquire(name="monitor", holder="b", ttl_seconds=30) is None
    assert lease_acquire(name="monitor", holder="a", ttl_seconds=30) == first


def test_an_expired_lease_moves_to_a_survivor_with_a_new_epoch():
    first = lease_acquire(name="monitor", holder="a", ttl_seconds=30)
    expire("monitor")

    second = lease_acquire(name="monitor", holder="b", ttl_seconds=30)

    assert second is not None
    assert second.epoch == first.epoch + 1
    assert lease_renew(token=first, ttl_seconds=30) is False
    assert lease_renew(token=second, ttl_seconds=30) is True


def test_a_released_lease_is_free_at_once():
    first = lease_acquire(name="monitor", holder="a", ttl_seconds=30)
    lease_release(token=first)

    assert lease_acquire(name="monitor", holder="b", ttl_seconds=30) is not None


def test_a_monitor_that_lost_its_lease_cannot_write_health(mb_pair):
    link, primary, _ = mb_pair
    stale = lease_acquire(name="monitor", holder="paused-node", ttl_seconds=30)
    expire("monitor")
    lease_acquire(name="monitor", holder="survivor", ttl_seconds=30)

    result = peer_health_changed(peer_id=primary.pk, health=Health.DOWN, at=timezone.now(), lease=stale)

    assert result is None
    primary.refresh_from_db()
    assert primary.health == Health.UP
