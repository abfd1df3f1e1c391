"""How late the monitor's own event loop runs: so that its slowness is not blamed on a peer.

A probe time-out means "no answer within the time-out" only if the monitor was there to
read one. When the loop is late (thousands of probes more than a core can carry, a long
garbage collection, the process starved of CPU), a reply that arrived in time sits
unread in the socket while the probe's timer fires, and a healthy peer looks stalled.
The measurement of 4,000 peers probed every 500 ms (docs/performance.md) declared 1,543
healthy peers down that way, and switched their links over.

:class:`LoopLag` is a task that asks to be woken every ``tick`` seconds and notes how
late each wake-up came. :meth:`LoopLag.worst_since` tells a watcher whose probe timed
out how late the loop ran during that probe (Lifeguard's "local health awareness",
reduced to what a single monitor needs).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

TICK_SECONDS = 0.025
# Wake-ups later than this are remembered; anything less is the loop's ordinary jitter.
NOTICEABLE_SECONDS = 0.01
# Long enough to cover any probe (its time-out is at most a few seconds).
MEMORY_SECONDS = 30.0


class LoopLag:
    def __init__(self, *, tick: float = TICK_SECONDS) -> None:
        self.tick = tick
        self._late: deque[tuple[float, float]] = deque()  # (woke at, how late), monotonic seconds
        self._asked_for: float | None = None
        # Probe time-outs the watchers did not count because of it (logged by the monitor).
        self.set_aside = 0

    async def run(self) -> None:
        try:
            while True:
                self._asked_for = time.monotonic() + self.tick
                await asyncio.sleep(self.tick)
                woke = time.monotonic()
                late = woke - self._asked_for
                if late >= NOTICEABLE_SECONDS:
                    self._late.append((woke, late))
                while self._late and woke - self._late[0][0] > MEMORY_SECONDS:
                    self._late.popleft()
        finally:
            # Stopped (the monitor gave up its lease): no wake-up is overdue any more.
            self._asked_for = None

    def worst_since(self, since: float) -> float:
        """The longest the loop was late, in seconds, between ``since`` (monotonic) and now."""
        now = time.monotonic()
        # A wake-up still overdue counts too: the caller may run before this task in the
        # loop's first turn after a long stall, the very turn that fired its timer.
        worst = max(0.0, now - self._asked_for) if self._asked_for is not None else 0.0
        for woke, late in reversed(self._late):
            if woke < since:
                break
            worst = max(worst, late)
        return worst
