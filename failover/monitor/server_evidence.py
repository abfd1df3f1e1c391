"""Busy is not dead: when a Collaboration Server is failed, degraded or up.

A server failure ends every agent log-in and session of that server, so it is declared
only on evidence that the node is gone, never on slowness alone:

* **refused or reset**: nothing listens on the node's port any more (the process died,
  the host rebooted). A saturated node does not refuse: the kernel queues or drops new
  connections, it does not answer them with a reset. Failed at once.
* **silent**: ``/healthz`` has not answered for at least two probes in a row *and* the
  node's own heartbeat (written every second from its event loop,
  failover/monitor/node_heartbeat.py) has been silent for ``silence`` seconds: a stopped
  or hung process, a host gone from the network.
* **unresponsive, nothing to tell**: no heartbeat can be read (the node never wrote one,
  or the monitor cannot read the table), and ``/healthz`` has gone unanswered for
  ``unresponsive`` seconds: longer than a busy node keeps anyone waiting.

A node whose ``/healthz`` times out while its heartbeat is fresh is alive but slow: it
is **degraded** (shown, alerted, and skipped by the director for new callers while
another server is healthy), as is a node that reports HTTP requests waiting a second or
more for a thread. Degraded clears after ``DEGRADED_CLEAR_SECONDS`` without either sign.

Pure logic (no I/O, no clock of its own) like hysteresis.py, so it can be tested exhaustively.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from failover.choices import Detection, Health
from failover.monitor.hysteresis import HealthTracker

# Probes in a row without an answer before silence or a time-out can count as evidence:
# one late answer is never enough.
MIN_UNANSWERED = 2
# A node that kept an HTTP request waiting this long for a thread is saturated.
DEGRADED_HTTP_WAIT_SECONDS = 1.0
# Degraded ends after this long without a sign of it, so a node at the edge of its
# capacity does not raise and clear an alert every few seconds.
DEGRADED_CLEAR_SECONDS = 10.0
# A heartbeat reading older than this says nothing about now (the monitor's own reads
# are late: its database is away, or its process is starved).
BEAT_READING_FRESH_SECONDS = 2.0


class Outcome(enum.Enum):
    """What one /healthz probe found."""

    OK = "ok"
    REFUSED = "refused"  # hard: nothing listens there
    RESET = "reset"  # hard: the node's process went away mid-answer
    TIMEOUT = "timeout"  # soft: no answer in time (busy, stopped, or lost on the way)
    ERROR = "error"  # soft: an unexpected status, an unreachable network
    SET_ASIDE = "set aside"  # a time-out while the monitor itself ran late (loop_lag.py)

    @property
    def hard(self) -> bool:
        return self in (Outcome.REFUSED, Outcome.RESET)


@dataclass(frozen=True)
class NodeBeat:
    """The freshest heartbeat of a server's nodes, as the monitor last read it."""

    age: float  # seconds since the last beat, measured by the database's clock when read
    read_at: float  # when the monitor read it (wall-clock seconds)
    http_wait: float = 0.0  # seconds: the longest an HTTP request waited for a thread

    def fresh(self, now: float) -> bool:
        """Whether this reading still says something about ``now``."""
        return now - self.read_at <= BEAT_READING_FRESH_SECONDS


@dataclass(frozen=True)
class ServerRules:
    silence: float
    unresponsive: float


@dataclass(frozen=True)
class Verdict:
    """What changed: a new health and/or a new degraded state (``None``: unchanged), and why."""

    health: Health | None = None
    reason: str = ""
    failed_at: float | None = None  # with a new DOWN: when the node first went unanswered
    degraded: bool | None = None
    degraded_reason: str = ""
    detection: str = ""  # with a new DOWN: how it was noticed (a Detection)


@dataclass
class ServerTracker:
    """Turns probe outcomes and heartbeat readings of one server into verdicts."""

    tracker: HealthTracker
    rules: ServerRules
    unanswered: int = 0
    unanswered_since: float | None = None
    last_error: str = ""
    degraded: bool = False
    degraded_reason: str = ""
    degraded_sign_at: float | None = None

    @property
    def health(self) -> Health:
        return self.tracker.health

    def probe(
        self, outcome: Outcome, now: float, beat: NodeBeat | None, error: str = "", *, sent_at: float | None = None
    ) -> Verdict:
        """Feed one probe's outcome at ``now`` with the latest heartbeat reading; ``sent_at``
        is when the probe went out (an unanswered one says the node was gone since then)."""
        if outcome == Outcome.OK:
            self.unanswered, self.unanswered_since = 0, None
            return self._combine(self.tracker.observe(True, now), self._degraded_check(now, beat))
        if outcome == Outcome.SET_ASIDE:
            return self._combine(None, self._degraded_check(now, beat))
        self.last_error = error or outcome.value
        if outcome.hard:
            detection = Detection.CONNECTION_REFUSED if outcome == Outcome.REFUSED else Detection.CONNECTION_RESET
            verdict = self._fail(now, error or outcome.value, detection)
            self.unanswered, self.unanswered_since = 0, None
            return verdict
        if self.unanswered == 0:
            self.unanswered_since = sent_at if sent_at is not None else now
        self.unanswered += 1
        return self.reconsider(now, beat)

    def reconsider(self, now: float, beat: NodeBeat | None) -> Verdict:
        """Decide again from what is known now (a new heartbeat reading arrived)."""
        gone = self._gone(now, beat)
        if gone:
            # It went away when it last beat, if that came after its first unanswered probe.
            heard = beat is not None and beat.fresh(now)
            last_beat = beat.read_at - beat.age if heard else now
            detection = Detection.HEARTBEAT if heard else Detection.TIMEOUT
            return self._fail(now, gone, detection, began=min(self.unanswered_since or now, last_beat))
        if self.unanswered:
            # Unanswered but not proven gone: no success streak, no failure counted.
            self.tracker.inconclusive()
        return self._combine(None, self._degraded_check(now, beat))

    def _gone(self, now: float, beat: NodeBeat | None) -> str:
        """Why the node is gone, or "" while it may only be busy."""
        if self.unanswered < MIN_UNANSWERED or self.unanswered_since is None:
            return ""
        unanswered_for = now - self.unanswered_since
        if beat is not None and beat.fresh(now):
            if beat.age >= self.rules.silence:
                return f"no answer to /healthz ({self.last_error}) and no heartbeat for {beat.age:.1f} s"
            return ""  # its heartbeat is fresh: busy, not dead
        if unanswered_for >= self.rules.unresponsive:
            return f"no answer to /healthz ({self.last_error}) for {unanswered_for:.1f} s, no heartbeat to read"
        return ""

    def _fail(self, now: float, why: str, detection: Detection, *, began: float | None = None) -> Verdict:
        """Evidence the node is gone: a failure for the tracker, which decides at once
        (unless the server was never seen up and is still within its start-up grace)."""
        changed = self.tracker.observe(False, now, hard=True)
        if changed != Health.DOWN:
            return Verdict()
        self.degraded, self.degraded_sign_at = False, None  # failed supersedes degraded
        return Verdict(health=changed, reason=why, failed_at=began or self.unanswered_since or now, detection=detection)

    def _degraded_check(self, now: float, beat: NodeBeat | None) -> Verdict | None:
        if self.tracker.health != Health.UP:
            return None
        sign = self._degraded_sign(now, beat)
        if sign:
            self.degraded_sign_at = now
            if not self.degraded:
                self.degraded, self.degraded_reason = True, sign
                return Verdict(degraded=True, degraded_reason=sign)
            return None
        if self.degraded and (self.degraded_sign_at is None or now - self.degraded_sign_at >= DEGRADED_CLEAR_SECONDS):
            self.degraded, self.degraded_reason = False, f"answering in time for {DEGRADED_CLEAR_SECONDS:.0f} s"
            return Verdict(degraded=False, degraded_reason=self.degraded_reason)
        return None

    def _degraded_sign(self, now: float, beat: NodeBeat | None) -> str:
        if self.unanswered >= MIN_UNANSWERED:
            return f"/healthz unanswered {self.unanswered} times in a row ({self.last_error})"
        if beat is not None and beat.fresh(now) and beat.http_wait >= DEGRADED_HTTP_WAIT_SECONDS:
            return f"HTTP requests waited {beat.http_wait:.1f} s for a thread"
        return ""

    @staticmethod
    def _combine(health: Health | None, degraded: Verdict | None) -> Verdict:
        if degraded is None:
            return Verdict(health=health)
        return Verdict(health=health, degraded=degraded.degraded, degraded_reason=degraded.degraded_reason)
