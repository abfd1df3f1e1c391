"""A browser that goes away while events are sent to it (issue 15, point 10).

uvicorn raises ``ClientDisconnected`` from a send to a client that has gone. A live event
forwarded while an agent's desktop disappeared let it escape the consumer: the consumer
never ran ``disconnect`` (its Redis subscription stayed), and its heartbeat task went on to
fail the same way ("Task exception was never retrieved" in the node's log). Real node
(uvicorn), real client that drops its connection without a close frame, real Redis.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
import redis
import websockets
from django.conf import settings

from common import live
from tests.processes import free_port, start_node, stop_process, wait_for_node
from tests.waiting import wait_until
from tests.websockets import session_cookie

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BURST = 60


@pytest.fixture
def node(tmp_path):
    port = free_port()
    log = tmp_path / "node.log"
    process = start_node("routing-a", port, log, COLLABADMIN_RUN_MONITOR="0", PYTHONUNBUFFERED="1")
    try:
        wait_for_node(f"http://127.0.0.1:{port}", process, log)
        yield port, log
    finally:
        stop_process(process)


def _subscribers(group: str) -> int:
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    channel = f"{prefix}__group__{group}"
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return dict(client.pubsub_numsub(channel)).get(channel.encode(), 0)
    finally:
        client.close()


def _burst(group: str) -> None:
    for index in range(BURST):
        live.send_now("session.changed", {"n": index}, [group])
    live.flush()


async def _connect_and_vanish(port: int, cookie: str, group: str) -> int:
    """Open the agent desktop's socket, start a burst of events, and drop the connection
    (no close frame) after the first one arrives; the events received before that."""
    headers = {"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"}
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/agent/", additional_headers=headers) as socket:
        await asyncio.wait_for(socket.recv(), 10)  # the snapshot
        threading.Thread(target=_burst, args=(group,), daemon=True).start()
        received = 0
        while received < 3:
            message = await asyncio.wait_for(socket.recv(), 10)
            received += '"heartbeat"' not in message
        socket.transport.abort()  # gone, as a closed laptop lid or a killed tab
        return received


def test_an_agent_desktop_that_vanishes_mid_burst_is_cleaned_up(node, agent):
    port, log = node
    group = live.agent_group(agent.pk)
    cookie = session_cookie(agent.user)

    for _ in range(3):
        assert asyncio.run(_connect_and_vanish(port, cookie, group)) == 3
        # The consumer ran its disconnect: no subscription of the gone socket is left.
        gone = "the gone socket unsubscribed"
        wait_until(lambda: _subscribers(group) == 0, timeout=30, message=gone, diagnostics=log.read_text)

    text = log.read_text()
    assert "ClientDisconnected" not in text
    assert "Task exception was never retrieved" not in text
    assert "Exception in ASGI application" not in text
