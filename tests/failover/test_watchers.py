"""A peer watcher against a real simulator process, with a slow writer behind it."""

from __future__ import annotations

import asyncio

from failover.choices import Health
from failover.monitor.targets import PeerTarget, Timings
from failover.monitor.watchers import PeerWatcher, Transition
from tests.peering.conftest import start_peer  # noqa: F401  (fixture)

TIMINGS = Timings(interval=0.2, timeout=1.0, rise=2, fall=3, flap_window=60.0, flap_max=10)


def test_a_crash_is_recorded_even_when_the_write_takes_longer_than_an_interval(start_peer):  # noqa: F811
    peer = start_peer("media-blender", "--name", "slow-writer")
    written: list[Health] = []

    async def slow_write(transition: Transition) -> None:
        # A busy database: the write takes three probe intervals. It must not be cut
        # short by the watcher's own wait, or the tracker and the database disagree.
        await asyncio.sleep(3 * TIMINGS.interval)
        written.append(transition.health)

    async def scenario() -> None:
        target = PeerTarget(1, "slow-writer", "media_blender", peer.host, peer.port, Health.UNKNOWN)
        watcher = PeerWatcher(target, TIMINGS, slow_write)
        task = asyncio.create_task(watcher.run())
        try:
            async with asyncio.timeout(10):
                while written != [Health.UP]:
                    await asyncio.sleep(0.02)
                peer.kill()
                while written != [Health.UP, Health.DOWN]:
                    await asyncio.sleep(0.02)
        finally:
            task.cancel()

    asyncio.run(scenario())
    assert written == [Health.UP, Health.DOWN]
