"""``subscribe_heartbeat``: a simulator process pushes heartbeats over the connection that asked."""

from __future__ import annotations

import asyncio
import time

import pytest

from failover.peering.client import PeerConnection, PeerError

WAIT_S = 2.0


def test_a_subscribed_connection_receives_numbered_heartbeats_at_the_interval_it_asked_for(media_blender, run):
    async def scenario() -> list[float]:
        events: asyncio.Queue[dict] = asyncio.Queue()
        async with await PeerConnection.open(media_blender.host, media_blender.port, events=events) as conn:
            assert "subscribe_heartbeat" in conn.info.ops
            assert await conn.call("subscribe_heartbeat", interval_ms=50) == {"interval_ms": 50}
            arrivals, seqs = [], []
            while len(seqs) < 10:
                beat = await asyncio.wait_for(events.get(), WAIT_S)
                arrivals.append(time.monotonic())
                seqs.append(beat["seq"])
                assert beat["event"] == "heartbeat"
                assert isinstance(beat["time"], float)
        assert seqs == list(range(1, 11))
        return arrivals

    arrivals = run(scenario())
    # Nine intervals of 50 ms: a steady cadence, whatever the busy machine adds to each one.
    assert 0.4 <= arrivals[-1] - arrivals[0] < 0.9


def test_heartbeats_go_only_to_the_connection_that_asked_and_stop_at_interval_zero(media_blender, run):
    async def scenario() -> None:
        asked: asyncio.Queue[dict] = asyncio.Queue()
        other: asyncio.Queue[dict] = asyncio.Queue()
        async with (
            await PeerConnection.open(media_blender.host, media_blender.port, events=asked) as conn,
            await PeerConnection.open(media_blender.host, media_blender.port, events=other),
        ):
            await conn.call("subscribe_heartbeat", interval_ms=20)
            await asyncio.wait_for(asked.get(), WAIT_S)
            await conn.call("subscribe_heartbeat", interval_ms=0)
            while not asked.empty():
                asked.get_nowait()
            await asyncio.sleep(0.2)
            assert asked.empty()
            assert other.empty()

    run(scenario())


def test_a_stalled_peer_sends_no_heartbeat_until_the_stall_is_cleared(media_blender, run):
    async def scenario() -> None:
        events: asyncio.Queue[dict] = asyncio.Queue()
        async with await PeerConnection.open(media_blender.host, media_blender.port, events=events) as conn:
            await conn.call("subscribe_heartbeat", interval_ms=20)
            await conn.call("fault", stall=True)
            await asyncio.sleep(0.1)
            while not events.empty():
                events.get_nowait()
            await asyncio.sleep(0.2)
            assert events.empty()
            await conn.call("fault", clear=True)
            assert (await asyncio.wait_for(events.get(), WAIT_S))["event"] == "heartbeat"

    run(scenario())


@pytest.mark.parametrize("interval_ms", [5, 60_001, -1, "100"])
def test_an_interval_out_of_range_is_refused(media_blender, run, interval_ms):
    async def scenario() -> None:
        async with await PeerConnection.open(media_blender.host, media_blender.port) as conn:
            with pytest.raises(PeerError) as refused:
                await conn.call("subscribe_heartbeat", interval_ms=interval_ms)
            assert refused.value.code == "invalid"

    run(scenario())


def test_a_peer_from_before_heartbeats_does_not_offer_them_and_answers_unknown_op(start_peer, run):
    old = start_peer("media-blender", "--name", "mb-old", "--no-heartbeat")

    async def scenario() -> None:
        async with await PeerConnection.open(old.host, old.port) as conn:
            assert "subscribe_heartbeat" not in conn.info.ops
            assert "ping" in conn.info.ops
            with pytest.raises(PeerError) as refused:
                await conn.call("subscribe_heartbeat", interval_ms=100)
            assert refused.value.code == "unknown_op"

    run(scenario())
