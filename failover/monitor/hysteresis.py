"""Rise/fall hysteresis with flap damping: turns probe results into health decisions.

Pure logic (no I/O, no clock of its own) so it can be tested exhaustively.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from failover.choices import Health


@dataclass
class HealthTracker:
    """The health of one probed thing, decided HAProxy-style.

    * ``fall`` consecutive failed probes make it DOWN; a *hard* failure (connection
      refused, reset or dropped) makes it DOWN at once: that is a fact, not noise.
    * ``rise`` consecutive good probes make it UP again.
    * Flap damping: after ``flap_max`` health changes within ``flap_window`` seconds, it
      must answer continuously for ``flap_window`` seconds before it may be UP again.
    * ``unknown_grace``: something never yet seen up (health UNKNOWN) is declared DOWN only
      after failing for this many seconds, hard failures included. A node that is still
      starting refuses connections; that must not read as a failure of a running node.
    """

    rise: int
    fall: int
    flap_window: float
    flap_max: int
    health: Health = Health.UNKNOWN
    unknown_grace: float = 0.0
    successes: int = 0
    failures: int = 0
    failing_since: float | None = None
    good_since: float | None = None
    changes: deque[float] = field(default_factory=deque)

    def observe(self, ok: bool, now: float, *, hard: bool = False) -> Health | None:
        """Feed one probe result taken at ``now`` (seconds); return the new health if it changed."""
        if ok:
            if self.successes == 0:
                self.good_since = now
            self.successes += 1
            self.failures = 0
            self.failing_since = None
            if self.health != Health.UP and self.successes >= self.rise and not self.is_held(now):
                return self._change(Health.UP, now)
            return None
        if self.failures == 0:
            self.failing_since = now
        self.failures += 1
        self.successes = 0
        self.good_since = None
        if self.health == Health.UNKNOWN and self.unknown_grace:
            if self.failures >= self.fall and now - self.failing_since >= self.unknown_grace:
                return self._change(Health.DOWN, now)
            return None
        if self.health != Health.DOWN and (hard or self.failures >= self.fall):
            return self._change(Health.DOWN, now)
        return None

    def inconclusive(self) -> None:
        """A probe that proves nothing either way (a busy server's late answer): it breaks
        a run of successes towards ``rise`` but counts no failure."""
        self.successes = 0
        self.good_since = None

    def is_flapping(self, now: float) -> bool:
        self._forget_old_changes(now)
        return len(self.changes) >= self.flap_max

    def is_held(self, now: float) -> bool:
        """Flapping and not yet good for a whole window: kept out of service."""
        if not self.is_flapping(now):
            return False
        return self.good_since is None or now - self.good_since < self.flap_window

    def _change(self, health: Health, now: float) -> Health:
        self.health = health
        self.changes.append(now)
        return health

    def _forget_old_changes(self, now: float) -> None:
        while self.changes and now - self.changes[0] > self.flap_window:
            self.changes.popleft()
