"""Beat's watchdog: it leaves a running monitor alone and stands in when none runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from failover.choices import Health, PeerKind, PeerPriority
from failover.models import Lease, Peer
from failover.monitor import watchdog
from failover.monitor.monitor import LEASE_NAME
from tests.factories import PeerFactory
from tests.peering.conftest import start_peer  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_watchdog_leaves_a_fresh_lease_alone():
    Lease.objects.create(name=LEASE_NAME, holder="routing-a:1", expires_at=timezone.now() + timedelta(seconds=30))

    assert watchdog.monitor_watchdog.apply().get() == "a monitor is running"
    assert Lease.objects.get(name=LEASE_NAME).holder == "routing-a:1"


def test_with_no_monitor_running_the_watchdog_stands_in_and_probes(server, start_peer, monkeypatch):  # noqa: F811
    simulator = start_peer("media-blender", "--name", "mb-1")
    peer = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.PRIMARY, port=simulator.port)
    Lease.objects.create(name=LEASE_NAME, holder="dead-node:1", expires_at=timezone.now() - timedelta(seconds=1))
    monkeypatch.setattr(watchdog, "STAND_IN_SECONDS", 2.0)

    assert watchdog.monitor_watchdog.apply().get() == "stood in"

    peer.refresh_from_db()
    assert peer.health == Health.UP
    assert peer.connection == "connected"
    lease = Lease.objects.get(name=LEASE_NAME)
    assert lease.epoch == 1
    assert lease.holder == ""  # released when the stand-in finished
    assert Peer.objects.filter(connection="connected").count() == 1
