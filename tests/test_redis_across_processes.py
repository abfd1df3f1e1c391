"""The configured Redis (embedded or REDIS_URL) really carries Celery tasks and channel
layer messages between separate processes of the stack."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from collabadmin.celery import app, ping
from tests.processes import ROOT, project_env, run_python_async


@pytest.fixture
def worker_queue():
    """A real ``celery worker`` process consuming a queue of this test's own."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "collabadmin",
            "worker",
            "-Q",
            queue,
            "--pool",
            "solo",
            "--loglevel",
            "WARNING",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=ROOT,
        env=project_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield queue, worker
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        app.control.purge()


def test_a_celery_worker_in_another_process_runs_a_task_sent_through_redis(worker_queue):
    queue, worker = worker_queue
    token = uuid.uuid4().hex

    result = ping.apply_async(args=[token], queue=queue)
    answer = result.get(timeout=30)

    assert answer["token"] == token
    assert answer["pid"] == worker.pid


# The pub/sub channel layer keeps subscriptions per event loop, as a web process does:
# each scenario subscribes, has another process send, and receives on one loop.
RECEIVE_TIMEOUT = 10


def test_a_channel_layer_message_sent_by_another_process_is_received_here():
    token = uuid.uuid4().hex

    async def scenario():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        code, output = await run_python_async(
            "from asgiref.sync import async_to_sync\n"
            "from channels.layers import get_channel_layer\n"
            f"async_to_sync(get_channel_layer().send)({channel!r}, {{'type': 'test.message', 'token': {token!r}}})\n"
        )
        assert code == 0, output
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            return await layer.receive(channel)

    assert async_to_sync(scenario)() == {"type": "test.message", "token": token}


def test_a_group_broadcast_from_another_process_reaches_every_member():
    group = f"test-{uuid.uuid4().hex[:8]}"

    async def scenario():
        layer = get_channel_layer()
        members = [await layer.new_channel() for _ in range(3)]
        for member in members:
            await layer.group_add(group, member)
        code, output = await run_python_async(
            "from asgiref.sync import async_to_sync\n"
            "from channels.layers import get_channel_layer\n"
            f"async_to_sync(get_channel_layer().group_send)({group!r}, {{'type': 'test.broadcast', 'n': 1}})\n"
        )
        assert code == 0, output
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            return [await layer.receive(member) for member in members]

    assert async_to_sync(scenario)() == [{"type": "test.broadcast", "n": 1}] * 3
