"""The phi accrual failure detector (Hayashibara, Défago, Yared, Katayama, 2004).

Instead of a fixed time-out, the detector learns how a peer's heartbeats usually arrive
(the mean and spread of the last inter-arrival times) and turns the silence since the
last one into a suspicion level, phi = -log10(P(a heartbeat still comes later than now)),
under a normal distribution of inter-arrival times (as Akka does; Cassandra uses an
exponential one). phi 8 means the silence would happen by chance once in 10^8
heartbeats. A peer whose heartbeats are regular is suspected soon after it stops; one
whose heartbeats jitter (a busy machine) is given the time its own history says it needs.

Pure logic, monotonic seconds passed in: tested exhaustively without a clock.
"""

from __future__ import annotations

import math
from collections import deque
from statistics import NormalDist

# Inter-arrival times remembered: at 100 ms, the last 20 s.
WINDOW = 200
# The spread is never taken as less than this fraction of the expected interval. Measured
# on a quiet machine the spread is a few milliseconds, and phi 8 would then suspect a
# peer a few milliseconds after a heartbeat is due: a scheduler hiccup of the peer's or
# our machine, which no history has shown yet, must not read as a stop. At 100 ms and
# phi 8 a silence of about 100 + 75 + 5.6 x 40 = 400 ms is suspected (with the pause below).
MIN_SPREAD_FRACTION = 0.4
# A silence this much longer than the history's mean is still normal (Akka's "acceptable
# heartbeat pause"). Under random packet loss, a heartbeat that TCP cannot resend at the
# next one's arrival (that one or its SACK lost too) is resent after the retransmission
# time-out, at least 200 ms on Linux: it arrives about 100 + 200 = 300 ms after the previous
# one. Without the pause the threshold (325 ms) was 25 ms above that, and one such silence
# with a little jitter switched a healthy peer over under 10 % loss (seen 2026-12-04). 75 ms
# leaves 100 ms of margin and still replaces a stalled peer within issue 16's 0.5 s.
ACCEPTABLE_PAUSE_S = 0.075
_STANDARD = NormalDist()


class PhiAccrual:
    """Suspicion of one peer from the arrival times of its heartbeats."""

    def __init__(self, *, expected_interval: float, threshold: float, window: int = WINDOW) -> None:
        self.expected_interval = expected_interval
        self.threshold = threshold
        self.min_spread = expected_interval * MIN_SPREAD_FRACTION
        self.last_arrival: float | None = None
        self._window = window
        self._intervals: deque[float] = deque()
        # Running sums: a heartbeat costs O(1), with hundreds of peers at ten a second.
        self._sum = self._squares = 0.0
        # Bootstrap as Akka does: before any history, two samples around the expected
        # interval, so the first heartbeats are judged by what was asked for.
        for sample in (expected_interval * 0.75, expected_interval * 1.25):
            self._add(sample)

    def heartbeat(self, now: float) -> None:
        """A heartbeat arrived at ``now`` (monotonic seconds)."""
        if self.last_arrival is not None:
            self._add(max(0.0, now - self.last_arrival))
        self.last_arrival = now

    def _add(self, sample: float) -> None:
        self._intervals.append(sample)
        self._sum += sample
        self._squares += sample * sample
        if len(self._intervals) > self._window:
            old = self._intervals.popleft()
            self._sum -= old
            self._squares -= old * old

    def mean_and_spread(self) -> tuple[float, float]:
        count = len(self._intervals)
        mean = self._sum / count
        variance = max(0.0, self._squares / count - mean * mean)
        return mean, max(math.sqrt(variance), self.min_spread)

    def phi(self, now: float) -> float:
        """The suspicion level at ``now``: 0 before the first heartbeat."""
        if self.last_arrival is None:
            return 0.0
        mean, spread = self.mean_and_spread()
        later = 1.0 - _STANDARD.cdf((now - self.last_arrival - mean - ACCEPTABLE_PAUSE_S) / spread)
        # Past ~1e-300 the tail underflows to 0: as suspicious as can be.
        return -math.log10(later) if later > 0 else math.inf

    def suspicious_after(self) -> float:
        """The silence (seconds since the last heartbeat) at which phi reaches the threshold."""
        mean, spread = self.mean_and_spread()
        # inv_cdf of the small tail probability keeps precision where 1 - 1e-8 would not.
        return mean + ACCEPTABLE_PAUSE_S - spread * _STANDARD.inv_cdf(10.0 ** (-self.threshold))
