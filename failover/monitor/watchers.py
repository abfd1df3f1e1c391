"""One asyncio task per watched thing: a peer over a held connection, or a server's /healthz."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from failover.choices import Detection, Health
from failover.monitor.hysteresis import HealthTracker
from failover.monitor.loop_lag import LoopLag
from failover.monitor.phi import PhiAccrual
from failover.monitor.server_evidence import NodeBeat, Outcome, ServerRules, ServerTracker, Verdict
from failover.monitor.targets import PeerTarget, ServerTarget, ServerTimings, Timings
from failover.peering import client
from failover.peering.client import Message

log = logging.getLogger(__name__)

# After a failed probe the next one goes out this soon (HAProxy's "fastinter"), so a
# stalled peer reaches ``fall`` failures in about fall x timeout, not fall x interval.
FAST_RETRY_SECONDS = 0.05
# A refused, reset or dropped connection is certain; a time-out may be a slow moment.
HARD_FAILURES = {client.REFUSED, client.RESET, client.CLOSED}
# A probe time-out while the monitor's own loop ran this late (as a fraction of the
# time-out) says more about the monitor than about the peer: see loop_lag.py.
LATE_FRACTION_OF_TIMEOUT = 0.5
# Connections being opened at the same time, across every peer watcher of a monitor.
# Opening one (connect, hello, heartbeat subscription, status read) costs the monitor's
# loop a few round trips; thousands at once (a monitor taking over 4,000 peers, or
# 2,000 down peers retried every interval) stalled the loop past the probe time-out, so
# every opening timed out, each time-out made another down peer to retry, and healthy
# peers never came back up. Queued behind this gate, an opening's time-out counts only
# from when it starts, and the loop does no more at once than it can finish in time.
OPENINGS_AT_ONCE = 64


@dataclass(frozen=True)
class Transition:
    """A health decision for the monitor to write."""

    target_id: int
    health: Health
    at: float  # wall-clock seconds
    failed_at: float | None
    error: str
    detection: str = ""  # a Detection: how a failure was noticed


def peer_detection(error: str, *, hard: bool) -> Detection:
    """How a peer's failure was noticed, from the adapter's ``"<reason>: <detail>"`` error."""
    reason = error.split(":", 1)[0]
    if reason == client.REFUSED:
        return Detection.CONNECTION_REFUSED
    if reason == client.RESET or (reason == client.CLOSED and "reset" in error):
        return Detection.CONNECTION_RESET
    if reason == client.PROTOCOL or (reason == client.CLOSED and "protocol violation" in error):
        return Detection.PROTOCOL_ERROR
    if reason == client.CLOSED:
        return Detection.CONNECTION_CLOSED
    if reason == client.TIMEOUT:
        return Detection.TIMEOUT
    if reason == "heartbeat":  # the peer's own heartbeats fell silent (HeartbeatWatch)
        return Detection.HEARTBEAT
    # A hard failure that is none of the above: the peer refused our hello (PeerError).
    return Detection.PROTOCOL_ERROR if hard else Detection.PROBE_FAILED


@dataclass
class Figures:
    """The latest probe figures, flushed to the database in bulk now and then."""

    at: float
    latency_ms: float | None
    successes: int
    failures: int
    error: str


OnTransition = Callable[[Transition], Awaitable[None]]
OnEvent = Callable[[PeerTarget, Message], None]


# A server never seen up is still starting (the stack starts its nodes one by one); only
# after this long without an answer is it declared down and its work ended.
SERVER_STARTUP_GRACE_SECONDS = 30.0


def make_tracker(timings: Timings, health: Health, *, unknown_grace: float = 0.0) -> HealthTracker:
    # Start from the health the database already has, so a monitor taking over from
    # another node does not flip every peer to unknown and back.
    return HealthTracker(
        rise=timings.rise,
        fall=timings.fall,
        flap_window=timings.flap_window,
        flap_max=timings.flap_max,
        health=health,
        unknown_grace=unknown_grace,
    )


class Watcher:
    """Shared loop: probe, feed the tracker, report transitions, wait."""

    def __init__(
        self,
        target_id: int,
        timings: Timings,
        health: Health,
        on_transition: OnTransition,
        *,
        unknown_grace: float = 0.0,
        start_delay: float = 0.0,
        loop_lag: LoopLag | None = None,
    ) -> None:
        self.target_id = target_id
        self.start_delay = start_delay
        self.loop_lag = loop_lag
        self.set_aside_in_a_row = 0
        self.timings = timings
        self.tracker = make_tracker(timings, health, unknown_grace=unknown_grace)
        self.on_transition = on_transition
        self.figures: Figures | None = None

    def set_aside_timeout(self, started: float) -> bool:
        """Whether the time-out of the probe started at ``started`` (monotonic) goes uncounted.

        It does when the monitor's loop ran late by half the time-out or more during the
        probe: a reply may have been waiting unread. At most ``fall`` in a row are set
        aside, so a peer that really stalled while the monitor is overloaded is still
        declared down, after twice the usual number of probes instead of never.
        """
        if self.loop_lag is None or self.set_aside_in_a_row >= self.timings.fall:
            return False
        if self.loop_lag.worst_since(started) < self.timings.timeout * LATE_FRACTION_OF_TIMEOUT:
            return False
        self.set_aside_in_a_row += 1
        self.loop_lag.set_aside += 1
        return True

    async def record(
        self,
        ok: bool,
        latency_ms: float | None,
        error: str = "",
        *,
        hard: bool = False,
        failing_since: float | None = None,
    ) -> None:
        """Feed one result to the tracker and write a health change it decides;
        ``failing_since`` (wall clock) is when a failure began, if known better than
        "at the first failed probe" (a silence began before it was noticed)."""
        if ok:
            self.set_aside_in_a_row = 0
        now = time.time()
        failing_since = (failing_since or self.tracker.failing_since) if not ok else None
        changed = self.tracker.observe(ok, now, hard=hard)
        self.figures = Figures(now, latency_ms, self.tracker.successes, self.tracker.failures, error)
        if changed is not None:
            down = changed == Health.DOWN
            failed_at = (failing_since or now) if down else None
            detection = peer_detection(error, hard=hard) if down else ""
            await self.on_transition(Transition(self.target_id, changed, now, failed_at, error, detection))

    def next_wait(self, ok: bool) -> float:
        # Retry fast only to confirm a suspected failure; a peer already down is
        # retried at the normal interval so thousands of dead peers cost little.
        if ok or self.tracker.health == Health.DOWN:
            return self.timings.interval
        return min(self.timings.interval, FAST_RETRY_SECONDS)


class PeerWatcher(Watcher):
    """Holds a connection open to the peer and judges it over that connection.

    The held connection is what makes a crash visible at once: the kernel closes the
    dead process's socket, the reader sees EOF, and ``closed`` wakes this task. A stalled
    peer keeps its socket open. A peer that offers heartbeats (``subscribe_heartbeat``)
    pushes one every ``heartbeat_interval`` and is declared down when its silence becomes
    suspicious (``_follow_heartbeats``); one that does not is pinged every interval and
    declared down after ``fall`` probe time-outs, as before heartbeats.
    """

    def __init__(
        self,
        target: PeerTarget,
        timings: Timings,
        on_transition: OnTransition,
        on_event: OnEvent | None = None,
        *,
        start_delay: float = 0.0,
        loop_lag: LoopLag | None = None,
        openings: asyncio.Semaphore | None = None,
    ) -> None:
        super().__init__(target.id, timings, target.health, on_transition, start_delay=start_delay, loop_lag=loop_lag)
        self.target = target
        # Shared by the monitor's peer watchers (OPENINGS_AT_ONCE); a watcher alone gets its own.
        self.openings = openings or asyncio.Semaphore(OPENINGS_AT_ONCE)
        self.on_event = on_event
        self.connection: client.PeerConnection | None = None
        # Set while the held connection carries heartbeats.
        self.detector: PhiAccrual | None = None
        self.beat = asyncio.Event()
        self.latency_ms: float | None = None

    async def run(self) -> None:
        await asyncio.sleep(self.start_delay)
        try:
            due = time.monotonic()
            while True:
                if self.detector is not None:
                    await self._follow_heartbeats()
                    due = time.monotonic() + self.next_wait(False)
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    continue
                ok = await self._probe_once()
                now = time.monotonic()
                if self.detector is not None:
                    continue
                if ok:
                    # A steady cadence: probes fall due every interval, so the probe's own
                    # round trip and a busy loop's delay in waking this task count towards
                    # the interval instead of adding to it; a task woken very late starts
                    # afresh rather than catching up with a burst.
                    due = max(due + self.timings.interval, now)
                else:
                    due = now + self.next_wait(ok)
                await self._wait(due - now)
        finally:
            if self.connection is not None:
                with contextlib.suppress(Exception):
                    await self.connection.close()

    async def _probe_once(self) -> bool:
        """Probe once; False when the probe failed (and was counted)."""
        began = time.monotonic()
        if self.connection is None or self.connection.closed.is_set():
            return await self._connect()
        result = await self.connection.probe(timeout=self.timings.timeout)
        hard = not result.ok and self.connection.closed.is_set()
        timed_out = not result.ok and not hard and (result.error or "").startswith(f"{client.TIMEOUT}:")
        if timed_out and self.set_aside_timeout(began):
            return True
        await self.record(result.ok, result.latency_ms, result.error or "", hard=hard)
        return result.ok

    async def _connect(self) -> bool:
        """Open the held connection (and ask for heartbeats); False when that failed.
        The wait for a turn to open (``openings``) is not part of the attempt: it begins,
        for its time-out and for setting one aside, once its turn has come."""
        async with self.openings:
            return await self._open(time.monotonic())

    async def _open(self, began: float) -> bool:
        started = time.perf_counter()
        self.detector = None
        try:
            self.connection = await client.PeerConnection.open(
                self.target.host, self.target.port, timeout=self.timings.timeout, on_event=self._deliver
            )
            await self._subscribe(self.connection)
            await self._read_status(self.connection)
        except client.PeerUnavailable as exc:
            self._drop_connection(str(exc))
            if exc.reason == client.TIMEOUT and self.set_aside_timeout(began):
                return True
            await self.record(False, None, str(exc), hard=exc.reason in HARD_FAILURES)
            return False
        except client.PeerError as exc:
            self._drop_connection(str(exc))
            await self.record(False, None, str(exc), hard=True)
            return False
        self.latency_ms = (time.perf_counter() - started) * 1000
        await self.record(True, self.latency_ms)
        return True

    async def _subscribe(self, conn: client.PeerConnection) -> None:
        """Ask for heartbeats when the policy wants them and the peer offers them; a peer
        from before heartbeats (not offered, or ``unknown_op``) is probed instead."""
        interval = self.timings.heartbeat_interval
        if not interval or conn.info is None or "subscribe_heartbeat" not in conn.info.ops:
            return
        try:
            await conn.call("subscribe_heartbeat", timeout=self.timings.timeout, interval_ms=round(interval * 1000))
        except client.PeerError:
            return
        detector = PhiAccrual(expected_interval=interval, threshold=self.timings.heartbeat_suspicion)
        # The subscription's answer is the first sign of life: the silence counts from it.
        detector.heartbeat(time.monotonic())
        self.beat.clear()
        self.detector = detector

    async def _read_status(self, conn: client.PeerConnection) -> None:
        """Hand on what a peer pushes only when it changes, read once as its connection
        opens: a Media Blender's ICM side (``icm_status``, delivered as an ``icm_status``
        event). Without it the side stays unknown until the MB happens to change it."""
        if self.on_event is None or conn.info is None or "icm_status" not in conn.info.ops:
            return
        try:
            status = await conn.call("icm_status", timeout=self.timings.timeout)
        except client.PeerError:
            return
        self.on_event(self.target, {**status, "event": "icm_status"})

    async def _follow_heartbeats(self) -> None:
        """Count every heartbeat as a good probe until the connection drops or the silence
        is judged a failure (``_judge_silence``); then drop the connection and return."""
        conn, detector = self.connection, self.detector
        assert conn is not None
        assert detector is not None
        assert detector.last_arrival is not None
        while True:
            silence = time.monotonic() - detector.last_arrival
            wait = detector.suspicious_after() - silence
            if wait <= 0:
                failure = self._judge_silence(detector, silence)
                if failure:
                    self._drop_connection(failure)
                    # The failure began when the first heartbeat missed was due.
                    began = time.time() - silence + detector.mean_and_spread()[0]
                    await self.record(False, None, failure, hard=True, failing_since=began)
                    return
                # Not yet: the monitor itself ran late. Look again soon.
                wait = self.timings.heartbeat_interval
            closed = asyncio.ensure_future(conn.closed.wait())
            beat = asyncio.ensure_future(self.beat.wait())
            try:
                await asyncio.wait([closed, beat], timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed.cancel()
                beat.cancel()
            if conn.closed.is_set():
                self.detector = None
                # Recorded outside the wait, as in ``_wait``: a write must not be cancelled.
                await self.record(False, None, f"closed: {conn.close_reason}", hard=True)
                return
            if self.beat.is_set():
                self.beat.clear()
                self.set_aside_in_a_row = 0
                await self.record(True, self.latency_ms)

    def _judge_silence(self, detector: PhiAccrual, silence: float) -> str:
        """Why a suspicious silence is a failure, or "" when it is not one yet.

        The late-monitor set-aside: when the monitor's own loop ran late during the silence
        (the whole machine paused, the monitor starved of CPU), a heartbeat may be sitting
        unread, and the peer may have been paused with it. That lateness is taken off the
        silence. A peer that really stopped is still declared down: its silence keeps
        growing, the monitor's lateness does not.
        """
        allowed = detector.suspicious_after()
        if self.loop_lag is not None:
            late = self.loop_lag.worst_since(time.monotonic() - silence)
            if silence - late < allowed:
                self.loop_lag.set_aside += 1
                return ""
        phi = detector.phi(time.monotonic())
        return f"heartbeat: silent for {silence * 1000:.0f} ms (suspicion phi {phi:.1f} >= {detector.threshold:g})"

    def _drop_connection(self, reason: str) -> None:
        self.detector = None
        if self.connection is not None:
            self.connection.abort(reason)
            self.connection = None

    async def _wait(self, seconds: float) -> None:
        """Sleep until the next probe, waking at once if the held connection drops."""
        if self.connection is None:
            await asyncio.sleep(seconds)
            return
        try:
            async with asyncio.timeout(seconds):
                await self.connection.closed.wait()
        except TimeoutError:
            return
        # Outside the time-out: recording writes to the database, which can take longer
        # than an interval on a busy machine, and a write cancelled before it started
        # would leave the tracker saying "down" while the database still says "up".
        await self.record(False, None, f"closed: {self.connection.close_reason}", hard=True)

    def _deliver(self, message: Message) -> None:
        if message.get("event") == "heartbeat":
            if self.detector is not None and self.connection is not None:
                self.detector.heartbeat(time.monotonic())
                self.beat.set()
            return
        if self.on_event is not None:
            self.on_event(self.target, message)


@dataclass(frozen=True)
class DegradedChange:
    """A server became degraded (up but slow) or stopped being so."""

    target_id: int
    degraded: bool
    at: float  # wall-clock seconds
    reason: str


OnDegraded = Callable[[DegradedChange], Awaitable[None]]
BeatSource = Callable[[int], NodeBeat | None]
# Probe time-outs set aside in a row (the monitor's own loop ran late) before the next
# one counts: a node that stopped while the monitor is overloaded is still noticed.
SERVER_SET_ASIDE_MAX = 2


class ServerWatcher:
    """Probes a node's ``/healthz`` over HTTP/1.1, a fresh connection each time (as a load
    balancer does), and decides from the answers and the node's heartbeat whether its
    server is up, degraded or failed (failover/monitor/server_evidence.py)."""

    def __init__(
        self,
        target: ServerTarget,
        timings: ServerTimings,
        on_transition: OnTransition,
        on_degraded: OnDegraded,
        *,
        beats: BeatSource = lambda server_id: None,
        start_delay: float = 0.0,
        loop_lag: LoopLag | None = None,
    ) -> None:
        self.target = target
        self.target_id = target.id
        self.timings = timings
        self.on_transition = on_transition
        self.on_degraded = on_degraded
        self.beats = beats
        self.start_delay = start_delay
        self.loop_lag = loop_lag
        self.set_aside_in_a_row = 0
        # Start from what the database holds, so a monitor taking over does not flip it.
        self.tracker = HealthTracker(
            rise=timings.rise,
            fall=1,  # only evidence of a gone node is fed in as a failure
            flap_window=timings.flap_window,
            flap_max=timings.flap_max,
            health=target.health,
            unknown_grace=SERVER_STARTUP_GRACE_SECONDS,
        )
        self.judge = ServerTracker(
            self.tracker, ServerRules(timings.silence, timings.unresponsive), degraded=target.degraded
        )
        self.figures: Figures | None = None
        parts = urlsplit(target.base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.path = (parts.path.rstrip("/") or "") + "/healthz"
        self.tls = parts.scheme == "https"

    async def run(self) -> None:
        await asyncio.sleep(self.start_delay)
        while True:
            sent_at = time.time()
            outcome, latency_ms, error = await self._probe_once()
            now = time.time()
            verdict = self.judge.probe(outcome, now, self.beats(self.target_id), error, sent_at=sent_at)
            self.figures = Figures(now, latency_ms, self.tracker.successes, self.judge.unanswered, error)
            await self._apply(verdict, now)
            await asyncio.sleep(self._next_wait(outcome))

    async def reconsider(self) -> None:
        """Decide again now (the monitor read the nodes' heartbeats): a stopped node is
        failed once its heartbeat is silent long enough, without waiting for a probe."""
        now = time.time()
        await self._apply(self.judge.reconsider(now, self.beats(self.target_id)), now)

    async def _apply(self, verdict: Verdict, now: float) -> None:
        if verdict.health is not None:
            transition = Transition(
                self.target_id, verdict.health, now, verdict.failed_at, verdict.reason, verdict.detection
            )
            await self.on_transition(transition)
        if verdict.degraded is not None:
            await self.on_degraded(DegradedChange(self.target_id, verdict.degraded, now, verdict.degraded_reason))

    def _next_wait(self, outcome: Outcome) -> float:
        # A probe that went unanswered is followed up at once (HAProxy's "fastinter"); a
        # server already failed is re-probed at the normal interval.
        if outcome in (Outcome.OK, Outcome.SET_ASIDE) or self.tracker.health == Health.DOWN:
            return self.timings.interval
        return min(self.timings.interval, FAST_RETRY_SECONDS)

    async def _probe_once(self) -> tuple[Outcome, float | None, str]:
        """Probe once: what happened, the latency of an answer, and the error text."""
        began, started = time.monotonic(), time.perf_counter()
        try:
            async with asyncio.timeout(self.timings.timeout):
                status = await self._get_status()
        except TimeoutError:
            if self._set_aside(began):
                return Outcome.SET_ASIDE, None, "timeout while the monitor ran late"
            return Outcome.TIMEOUT, None, "timeout"
        except ssl.SSLCertVerificationError as exc:
            # A node that answers with a certificate we cannot trust is there, but is not
            # to be believed: a clear reason, never a silent pass or a "node gone".
            return Outcome.ERROR, None, f"TLS certificate not trusted: {exc.verify_message or exc.reason}"
        except ssl.SSLError as exc:
            return Outcome.ERROR, None, f"TLS handshake failed: {exc.reason or exc}"
        except TlsSetupError as exc:
            return Outcome.ERROR, None, str(exc)
        except ConnectionRefusedError:
            return Outcome.REFUSED, None, "connection refused: no process listens at the node's address"
        except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError):
            return Outcome.RESET, None, "connection reset: the node's process went away"
        except OSError as exc:
            return Outcome.ERROR, None, f"unreachable: {exc}"
        self.set_aside_in_a_row = 0
        if status is None:
            return Outcome.RESET, None, "connection closed without an answer: the node's process went away"
        if status != 200:
            return Outcome.ERROR, None, f"HTTP {status}"
        return Outcome.OK, (time.perf_counter() - started) * 1000, ""

    def _set_aside(self, began: float) -> bool:
        """Whether a time-out goes uncounted: the monitor's own loop ran late by half the
        time-out or more during the probe (a reply may have sat unread), at most
        ``SERVER_SET_ASIDE_MAX`` in a row."""
        if self.loop_lag is None or self.set_aside_in_a_row >= SERVER_SET_ASIDE_MAX:
            self.set_aside_in_a_row = 0
            return False
        if self.loop_lag.worst_since(began) < self.timings.timeout * LATE_FRACTION_OF_TIMEOUT:
            self.set_aside_in_a_row = 0
            return False
        self.set_aside_in_a_row += 1
        self.loop_lag.set_aside += 1
        return True

    async def _get_status(self) -> int | None:
        """The status of ``GET /healthz``; None when the node closed without answering."""
        tls = tls_context(settings.COLLABADMIN_TLS_CA_BUNDLE) if self.tls else None
        reader, writer = await asyncio.open_connection(
            self.host, self.port, ssl=tls, server_hostname=self.host if tls else None
        )
        try:
            request = f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nConnection: close\r\n\r\n"
            writer.write(request.encode())
            await writer.drain()
            status_line = await reader.readline()
            if not status_line:
                return None
            parts = status_line.split()
            return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class TlsSetupError(Exception):
    """The monitor's own TLS settings are unusable (the CA bundle cannot be read)."""


@functools.cache
def tls_context(ca_bundle: str) -> ssl.SSLContext:
    """How ``https://`` nodes are probed: certificate and host name verified against
    ``ca_bundle`` (a PEM file, for a private CA), or the system's trusted CAs when empty."""
    try:
        return ssl.create_default_context(cafile=ca_bundle or None)
    except (OSError, ssl.SSLError) as exc:
        raise TlsSetupError(f"TLS CA bundle {ca_bundle} cannot be used (COLLABADMIN_TLS_CA_BUNDLE): {exc}") from None
