"""Network faults, for real (issue 16, point 7): the connected Media Blender runs in a
network namespace of the test's own, behind a veth pair, and nftables rules inside the
namespace lose packets at random, cut the link, then heal it. The standby runs on loopback.

* Random loss (10 % both ways) is no switchover: TCP retransmits a lost heartbeat as soon
  as the next one is acknowledged, well within the silence that is suspected.
* A cut link is a silence like a stall: the standby is connected.
* The healed link brings the peer back up as the standby; at no moment are two connected.
"""

from __future__ import annotations

import threading
import time

import pytest

from failover.choices import FailoverKind, Health, PeerKind, PeerPriority
from failover.models import FailoverEvent, Link, Peer
from failover.monitor.runner import monitor_in_thread
from failover.services.switchover import link_switchover
from tests.factories import PeerFactory
from tests.netns import Namespace, namespace  # noqa: F401  (fixture)
from tests.pairs import connected
from tests.peering.conftest import start_peer  # noqa: F401  (fixture)
from tests.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LOSS_PERCENT = 10
LOSS_SECONDS = 20
# A cut link is suspected like a stall (tests/failover/test_heartbeat_detection.py).
PARTITION_BOUND_S = 1.0


@pytest.fixture
def pair_across_namespace(server, start_peer, namespace: Namespace):  # noqa: F811
    """mb-ns (in the namespace, connected) and mb-lo (loopback, standby), both up."""
    inside = start_peer("media-blender", "--name", "mb-ns", "--host", namespace.address, launcher=namespace.launcher())
    outside = start_peer("media-blender", "--name", "mb-lo")
    PeerFactory(
        server=server,
        kind=PeerKind.MEDIA_BLENDER,
        priority=PeerPriority.PRIMARY,
        name="mb-ns",
        host=namespace.address,
        port=inside.port,
    )
    PeerFactory(
        server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.SECONDARY, name="mb-lo", port=outside.port
    )
    return Link.objects.get(server=server, kind=PeerKind.MEDIA_BLENDER)


def put_in_front(link: Link, name: str) -> None:
    wait_until(lambda: link.peers().filter(health=Health.UP).count() == 2, timeout=15, message="both peers up")
    if connected(link) != [name]:
        link_switchover(
            link_id=link.pk, actor="test", reason="namespaced peer in front", to_peer_id=Peer.objects.get(name=name).pk
        )
    assert connected(link) == [name]


class ConnectedWatch:
    """Polls the link from a thread of its own and keeps the largest number of connected
    peers ever seen (the database's constraint would refuse two; this checks it)."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        from django.db import connection

        try:
            while not self._stop.is_set():
                self.most = max(self.most, len(connected(self.link)))
                time.sleep(0.01)
        finally:
            connection.close()

    def __enter__(self) -> ConnectedWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def test_random_packet_loss_below_the_suspicion_causes_no_switchover(pair_across_namespace, namespace):  # noqa: F811
    link = pair_across_namespace
    with monitor_in_thread():
        put_in_front(link, "mb-ns")
        events_before = FailoverEvent.objects.filter(link=link).count()

        namespace.lose(LOSS_PERCENT)
        time.sleep(LOSS_SECONDS)
        dropped = namespace.dropped()
        namespace.heal()

        assert connected(link) == ["mb-ns"]
    assert dropped > 0, "the loss rules dropped nothing: the test proved nothing"
    assert FailoverEvent.objects.filter(link=link).count() == events_before
    assert Peer.objects.get(name="mb-ns").health == Health.UP


def test_a_cut_link_is_handled_like_a_stall_and_the_healed_peer_stays_standby(pair_across_namespace, namespace):  # noqa: F811
    link = pair_across_namespace
    with monitor_in_thread(), ConnectedWatch(link) as watch:
        put_in_front(link, "mb-ns")

        cut_at = time.time()
        namespace.cut()
        wait_until(lambda: connected(link) == ["mb-lo"], timeout=10, message="switch to the loopback standby")
        assert Peer.objects.get(name="mb-ns").health == Health.DOWN

        time.sleep(2)  # the cut lasts: reconnection attempts time out meanwhile
        namespace.heal()
        wait_until(
            lambda: Peer.objects.get(name="mb-ns").health == Health.UP, timeout=15, message="healed peer up again"
        )
        time.sleep(1)
        assert connected(link) == ["mb-lo"]

    assert watch.most == 1
    event = FailoverEvent.objects.get(link=link, kind=FailoverKind.AUTOMATIC)
    assert (event.from_peer.name, event.to_peer.name) == ("mb-ns", "mb-lo")
    assert "heartbeat: silent for" in event.reason, event.reason
    # Timed by the switchover's own record, not by this test's polling of the database.
    assert event.completed_at.timestamp() - cut_at < PARTITION_BOUND_S, event.reason
