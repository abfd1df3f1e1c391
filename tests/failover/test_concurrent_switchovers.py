"""Worker processes racing switchovers on the same pair (PostgreSQL in CI): the database
must never hold two connected peers, not even for an instant a reader could see."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from django.db import connection

from failover.choices import PeerConnection
from failover.models import FailoverEvent, Link, Peer
from tests.processes import ROOT, child_database_url, project_env

WORKERS = 3
STEPS_PER_WORKER = 60

RACING_WORKER = """
import random, sys
import django
django.setup()
from django.utils import timezone
from failover.choices import Health
from failover.services.health import peer_health_changed
from failover.services.maintenance import peer_set_maintenance
from failover.services.switchover import SwitchoverRefused, link_switchover

link_id, seed, steps = int(sys.argv[1]), int(sys.argv[3]), int(sys.argv[4])
peer_ids = [int(p) for p in sys.argv[2].split(",")]
rng = random.Random(seed)
print("ready", flush=True)
sys.stdin.readline()  # the start signal: every worker begins at the same moment
for _ in range(steps):
    peer_id = rng.choice(peer_ids)
    action = rng.choice(["switch", "switch", "down", "up", "up", "maintenance"])
    try:
        if action == "switch":
            link_switchover(link_id=link_id, actor="system:race", reason="race", to_peer_id=peer_id)
        elif action == "maintenance":
            peer_set_maintenance(peer_id=peer_id, on=rng.random() < 0.3, actor="system:race", reason="race")
        else:
            health = Health.DOWN if action == "down" else Health.UP
            peer_health_changed(peer_id=peer_id, health=health, at=timezone.now())
    except SwitchoverRefused:
        pass
print("done", flush=True)
"""


def watcher(server_id: int, kind: str, stop: threading.Event, seen: list[int]) -> None:
    try:
        while not stop.is_set():
            seen.append(
                Peer.objects.filter(server_id=server_id, kind=kind, connection=PeerConnection.CONNECTED).count()
            )
    finally:
        connection.close()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_racing_worker_processes_never_leave_two_peers_connected(mb_pair):
    link, primary, secondary = mb_pair
    peers = f"{primary.pk},{secondary.pk}"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", RACING_WORKER, str(link.pk), peers, str(seed), str(STEPS_PER_WORKER)],
            cwd=ROOT,
            env=project_env(DATABASE_URL=child_database_url()),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(WORKERS)
    ]
    stop = threading.Event()
    seen: list[int] = []
    watch = threading.Thread(target=watcher, args=(link.server_id, link.kind, stop, seen))
    try:
        for worker in workers:
            assert worker.stdout.readline().strip() == "ready", worker.stderr.read()
        watch.start()
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=180) for worker in workers]
    finally:
        stop.set()
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
        if watch.is_alive():
            watch.join(timeout=10)

    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
        assert out.strip().endswith("done")
    assert seen
    assert max(seen) <= 1, "a reader saw two connected peers in one pair"
    link.refresh_from_db()
    connected = list(link.peers().filter(connection=PeerConnection.CONNECTED))
    eligible = [p for p in link.peers() if p.is_eligible]
    assert len(connected) == (1 if eligible else 0)
    if connected:
        assert connected[0].connected_epoch == link.epoch
    # Every change raised the epoch by exactly one and wrote one event in the same transaction.
    epochs = list(FailoverEvent.objects.filter(link=link).values_list("epoch", flat=True))
    assert len(epochs) == len(set(epochs)) == Link.objects.get(pk=link.pk).epoch
