"""Live events leave through one sender per process: queued by the committing thread,
numbered and sent in commit order by the sender's own loop (real Redis channel layer)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import connection, transaction

from common import live

pytestmark = pytest.mark.django_db(transaction=True)


class _RolledBack(Exception):
    pass


def _publish_in_three_transactions(group: str) -> None:
    with transaction.atomic():
        for n in range(40):
            live.publish("test.event", {"n": n}, groups=[group])
    try:
        with transaction.atomic():
            live.publish("test.event", {"n": "rolled back"}, groups=[group])
            raise _RolledBack
    except _RolledBack:
        pass
    with transaction.atomic():
        live.publish("test.event", {"n": 40}, groups=[group])
    assert live.flush(), "every queued event left within the time-out"
    connection.close()  # a pool thread's connection: the test database must not keep it


def test_events_arrive_in_commit_order_with_increasing_numbers_and_rolled_back_ones_never():
    group = "test.live-sender"

    async def scenario() -> list[dict]:
        # One loop throughout, like a web process holding a desktop's subscription.
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        await sync_to_async(_publish_in_three_transactions, thread_sensitive=False)(group)
        received = []
        async with asyncio.timeout(10):
            while len(received) < 41:
                received.append((await layer.receive(channel))["event"])
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.3):
                received.append((await layer.receive(channel))["event"])
        return received

    events = async_to_sync(scenario)()

    assert [event["data"]["n"] for event in events] == list(range(41)), "in order, the rolled-back one never"
    numbers = [event["seq"] for event in events]
    assert numbers == sorted(set(numbers)), "strictly increasing"
    assert numbers[-1] <= live.current_sequence()
