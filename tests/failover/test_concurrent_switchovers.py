"""Workers racing switchovers on real, separate database connections (PostgreSQL in CI)."""

from __future__ import annotations

import random
import threading

import pytest
from django.db import connection, connections
from django.utils import timezone

from failover.choices import Health, PeerConnection
from failover.models import FailoverEvent, Link, Peer
from failover.services.health import peer_health_changed
from failover.services.maintenance import peer_set_maintenance
from failover.services.switchover import SwitchoverRefused, link_switchover

WORKERS = 4
STEPS_PER_WORKER = 40


def worker(link_id: int, peer_ids: list[int], seed: int, start: threading.Barrier, errors: list[BaseException]):
    rng = random.Random(seed)
    try:
        start.wait()
        for _ in range(STEPS_PER_WORKER):
            peer_id = rng.choice(peer_ids)
            action = rng.choice(["switch", "switch", "down", "up", "up", "maintenance"])
            try:
                if action == "switch":
                    link_switchover(link_id=link_id, actor="test", reason="race", to_peer_id=peer_id)
                elif action == "maintenance":
                    on = rng.random() < 0.3
                    peer_set_maintenance(peer_id=peer_id, on=on, actor="test", reason="race")
                else:
                    health = Health.DOWN if action == "down" else Health.UP
                    peer_health_changed(peer_id=peer_id, health=health, at=timezone.now())
            except SwitchoverRefused:
                pass
    except BaseException as exc:  # reported to the test thread
        errors.append(exc)
    finally:
        connection.close()


def watcher(server_id: int, kind: str, stop: threading.Event, seen: list[int]):
    try:
        while not stop.is_set():
            seen.append(
                Peer.objects.filter(server_id=server_id, kind=kind, connection=PeerConnection.CONNECTED).count()
            )
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_racing_workers_never_leave_two_peers_connected(mb_pair):
    link, primary, secondary = mb_pair
    start = threading.Barrier(WORKERS)
    errors: list[BaseException] = []
    stop = threading.Event()
    seen: list[int] = []
    watch = threading.Thread(target=watcher, args=(link.server_id, link.kind, stop, seen))
    threads = [
        threading.Thread(target=worker, args=(link.pk, [primary.pk, secondary.pk], seed, start, errors))
        for seed in range(WORKERS)
    ]
    watch.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    stop.set()
    watch.join(timeout=10)

    assert not errors, errors
    assert seen
    assert max(seen) <= 1, "a reader saw two connected peers in one pair"
    link.refresh_from_db()
    connected = list(link.peers().filter(connection=PeerConnection.CONNECTED))
    eligible = [p for p in link.peers() if p.is_eligible]
    assert len(connected) == (1 if eligible else 0)
    if connected:
        assert connected[0].connected_epoch == link.epoch
    # Every change raised the epoch by exactly one, so epochs of events are all distinct.
    epochs = list(FailoverEvent.objects.filter(link=link).values_list("epoch", flat=True))
    assert len(epochs) == len(set(epochs)) == Link.objects.get(pk=link.pk).epoch
    connections.close_all()
