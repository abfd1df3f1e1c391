"""Crashes that must not break the pair: a worker killed mid-switchover, Redis restarting."""

from __future__ import annotations

import random
import subprocess
import sys
import time

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from collabadmin import embedded_redis, live
from failover.choices import FailoverKind, PeerConnection
from failover.models import FailoverEvent, Link
from failover.services.switchover import link_switchover
from tests.processes import ROOT, child_database_url, project_env

SWITCH_FOREVER = """
import sys
import django
django.setup()
from failover.services.switchover import link_switchover
link_id = int(sys.argv[1])
count = 0
while True:
    link_switchover(link_id=link_id, actor="system:test-worker", reason="crash test")
    count += 1
    if count == 5:
        print("running", flush=True)
"""


def assert_pair_consistent(link: Link) -> None:
    link.refresh_from_db()
    connected = list(link.peers().filter(connection=PeerConnection.CONNECTED))
    assert len(connected) == 1, "both peers are healthy, so exactly one must be connected"
    assert connected[0].connected_epoch == link.epoch
    # Every committed switchover wrote its event in the same transaction: no half-done one.
    assert FailoverEvent.objects.filter(link=link, epoch=link.epoch).count() == 1
    assert link.peers().filter(connection=PeerConnection.STANDBY, connected_epoch__isnull=False).count() == 0


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_in_the_middle_of_switchovers_leaves_a_consistent_pair(mb_pair):
    link, _, _ = mb_pair
    rng = random.Random(7)
    for attempt in range(4):
        worker = subprocess.Popen(
            [sys.executable, "-c", SWITCH_FOREVER, str(link.pk)],
            cwd=ROOT,
            env=project_env(DATABASE_URL=child_database_url()),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert worker.stdout.readline().strip() == "running", worker.stderr.read()
            time.sleep(rng.uniform(0.05, 0.4))  # a random moment inside the busy loop
            assert worker.poll() is None, "the worker must still be switching when it is killed"
        finally:
            worker.kill()
            worker.wait(timeout=10)

        assert_pair_consistent(link)
        # The pair still works for the next writer.
        result = link_switchover(link_id=link.pk, actor="test", reason=f"after crash {attempt}")
        assert result.outcome == "switched"
        assert_pair_consistent(link)
    assert FailoverEvent.objects.filter(link=link, kind=FailoverKind.MANUAL).count() > 20


@pytest.fixture
def restartable_redis(tmp_path, settings, monkeypatch):
    """The project pointed at a Redis server of this test's own, which it can restart."""
    socket = embedded_redis.ensure_running(tmp_path)
    url = f"unix://{socket}"
    settings.REDIS_URL = url
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [url]}}
    }
    monkeypatch.setattr(live, "_redis_client", None)
    yield tmp_path
    embedded_redis.stop(tmp_path)


def listen() -> str:
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(live.STATUS_GROUP, channel)
    return channel


def receive(channel: str) -> dict:
    async def bounded() -> dict:
        import asyncio

        async with asyncio.timeout(5):
            return await get_channel_layer().receive(channel)

    return async_to_sync(bounded)()


@pytest.mark.django_db(transaction=True)
def test_switchovers_go_on_while_redis_restarts_and_live_updates_resume(mb_pair, restartable_redis, caplog):
    link, _, _ = mb_pair
    before = listen()
    link_switchover(link_id=link.pk, actor="test", reason="redis up")
    first = receive(before)["event"]
    assert first["type"] == "link.changed"

    embedded_redis.stop(restartable_redis)
    during = link_switchover(link_id=link.pk, actor="test", reason="redis down")
    assert during.outcome == "switched"
    assert "not broadcast" in caplog.text

    embedded_redis.ensure_running(restartable_redis)
    after = listen()  # a desktop reconnects and subscribes again
    link_switchover(link_id=link.pk, actor="test", reason="redis back")
    resumed = receive(after)["event"]

    assert resumed["data"]["reason"] == "redis back"
    assert resumed["seq"] > first["seq"], "sequence numbers keep increasing across a Redis restart"
    assert_pair_consistent(link)
