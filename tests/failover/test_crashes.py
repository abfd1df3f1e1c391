"""Crashes that must not break the pair: a worker killed mid-switchover, Redis restarting."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import connection

from collabadmin import embedded_redis
from common import live
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
def restartable_redis(tmp_path, settings):
    """The project pointed at a Redis server of this test's own, which it can restart."""
    socket = embedded_redis.ensure_running(tmp_path)
    url = f"unix://{socket}"
    settings.REDIS_URL = url
    settings.CHANNEL_LAYERS = {
        "default": {**settings.CHANNEL_LAYERS["default"], "CONFIG": {"hosts": [url], "prefix": "crash-test"}}
    }
    yield tmp_path
    embedded_redis.stop(tmp_path)


RESUME_WITHIN_SECONDS = 10


@pytest.mark.django_db(transaction=True)
def test_switchovers_go_on_while_redis_restarts_and_live_updates_resume(mb_pair, restartable_redis, caplog):
    link, _, _ = mb_pair

    def switch_then_close(**kwargs):
        # Runs in a pool thread: close its connection, or the test database keeps a session.
        try:
            return link_switchover(**kwargs)
        finally:
            connection.close()

    switch = sync_to_async(switch_then_close, thread_sensitive=False)

    async def scenario() -> tuple[dict, dict]:
        # One event loop throughout, like a web process holding desktops' subscriptions.
        layer = get_channel_layer()
        desktop = await layer.new_channel()
        await layer.group_add(live.STATUS_GROUP, desktop)
        await switch(link_id=link.pk, actor="test", reason="redis up")
        async with asyncio.timeout(5):
            first = (await layer.receive(desktop))["event"]

        embedded_redis.stop(restartable_redis)
        during = await switch(link_id=link.pk, actor="test", reason="redis down")
        assert during.outcome == "switched", "the database does not need Redis to switch over"

        embedded_redis.ensure_running(restartable_redis)
        # A desktop that reconnects subscribes again; switchovers go on meanwhile. The
        # first event it receives proves live updates resumed, within the bound.
        reconnected = await layer.new_channel()
        await layer.group_add(live.STATUS_GROUP, reconnected)
        async with asyncio.timeout(RESUME_WITHIN_SECONDS):
            while True:
                await switch(link_id=link.pk, actor="test", reason="redis back")
                try:
                    async with asyncio.timeout(0.5):
                        return first, (await layer.receive(reconnected))["event"]
                except TimeoutError:
                    continue

    first, resumed = async_to_sync(scenario)()

    assert first["type"] == "link.changed"
    assert "not broadcast" in caplog.text
    assert resumed["data"]["reason"] == "redis back"
    assert resumed["seq"] > first["seq"], "sequence numbers keep increasing across a Redis restart"
    assert_pair_consistent(link)
