"""A monitor taking over many peers spreads its first probes over one interval.

Started together, thousands of watchers opened thousands of connections in the same
instant and healthy peers timed out (docs/performance.md, monitoring scale).
"""

from __future__ import annotations

import pytest
from django.db import transaction

from failover.choices import PeerKind, PeerPriority
from failover.models import Policy
from failover.monitor.runner import monitor_in_thread
from tests.factories import PeerFactory, ServerFactory
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

INTERVAL_MS = 1000


@pytest.fixture
def slow_interval(db):
    policy = Policy.current()
    policy.probe_interval_ms = INTERVAL_MS
    policy.save()


def four_peers(server_name: str) -> None:
    with transaction.atomic():  # the monitor's next topology refresh sees all four or none
        server = ServerFactory(name=server_name)
        for kind in (PeerKind.MEDIA_BLENDER, PeerKind.ADMIN_WORKSTATION):
            for priority in (PeerPriority.PRIMARY, PeerPriority.SECONDARY):
                PeerFactory(server=server, kind=kind, priority=priority)


def watchers_start_delays(monitor, count: int) -> list[float]:
    wait_until(lambda: len(monitor.peer_watchers) == count, timeout=10, message=f"{count} peers watched")
    return sorted(watcher.start_delay for _, watcher, _ in list(monitor.peer_watchers.values()))


def test_first_probes_are_spread_evenly_over_one_interval_and_peers_added_later_share_one(slow_interval):
    for n in range(3):
        four_peers(f"routing-{n}")

    with monitor_in_thread() as monitor:
        delays = watchers_start_delays(monitor, 12)
        assert delays == pytest.approx([i * INTERVAL_MS / 1000 / 12 for i in range(12)])

        four_peers("routing-late")
        later = watchers_start_delays(monitor, 16)

    # The four added are started by one topology refresh: spread among themselves.
    assert later == pytest.approx(sorted([*delays, 0.0, 0.25, 0.5, 0.75]))
