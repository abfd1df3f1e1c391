"""The monitor loop: hold the lease, watch everything, write decisions, give way when replaced."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections

from failover.choices import Health
from failover.monitor import targets
from failover.monitor.loop_lag import LoopLag
from failover.monitor.server_evidence import NodeBeat
from failover.monitor.targets import PeerTarget, ServerTarget, ServerTimings, Timings
from failover.monitor.watchers import (
    OPENINGS_AT_ONCE,
    DegradedChange,
    OnEvent,
    PeerWatcher,
    ServerWatcher,
    Transition,
    Watcher,
)
from failover.services.health import ProbeFigures, peer_health_changed, peers_record_probes
from failover.services.heartbeats import node_heartbeats_read
from failover.services.lease import LeaseToken, lease_acquire, lease_release, lease_renew
from failover.services.servers import server_degraded_changed, server_health_changed

log = logging.getLogger(__name__)

LEASE_NAME = "health-monitor"
# How often the set of peers and servers is re-read, so configuration changes are picked up.
TOPOLOGY_REFRESH_SECONDS = 2.0
# Probe figures (latency, counters) are informational; writing them in bulk every few
# seconds keeps thousands of peers from costing thousands of writes a second.
FIGURES_FLUSH_SECONDS = 3.0
# How often the nodes' heartbeats are read (one query): a stopped node is failed within
# the policy's silence plus this.
BEATS_READ_SECONDS = 0.5
# Heartbeats the monitor asks for, per second, from all its peers together: with more
# peers each one beats less often (4,000 peers: once a second), so that reading them
# stays within a core. Below that the policy's interval applies.
HEARTBEATS_PER_SECOND = 4000
# The monitor's lateness reported with each lease renewal (for /metrics) is the worst of
# this many seconds: longer than a scrape interval, so no late moment goes unseen.
LATENESS_WINDOW_SECONDS = 30.0
# Database errors in the monitor's own loop are logged at most this often.
DB_ERROR_LOG_SECONDS = 10.0


def default_holder() -> str:
    node = os.environ.get("COLLABADMIN_SERVER_NAME") or socket.gethostname()
    return f"{node}:{os.getpid()}"


def _dt(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


class Monitor:
    """Runs until ``stop`` is set. Only the holder of the database lease probes and writes;
    the others wait and take over within a lease time-to-live when the holder dies."""

    def __init__(self, *, holder: str | None = None, on_event: OnEvent | None = None) -> None:
        self.holder = holder or default_holder()
        self.on_event = on_event
        self.token: LeaseToken | None = None
        self.peer_watchers: dict[int, tuple[PeerTarget, PeerWatcher, asyncio.Task[None]]] = {}
        self.server_watchers: dict[int, tuple[ServerTarget, ServerWatcher, asyncio.Task[None]]] = {}
        self.timings: Timings | None = None
        # The peers' timings: the policy's, with the heartbeat interval scaled to their number.
        self.peer_timings: Timings | None = None
        self.server_timings: ServerTimings | None = None
        # The nodes' heartbeats as last read: server id -> the freshest beat of its nodes.
        self.node_beats: dict[int, NodeBeat] = {}
        self.loop_lag = LoopLag()
        # Every peer watcher opens its connection through this gate (watchers.OPENINGS_AT_ONCE).
        self.peer_openings = asyncio.Semaphore(OPENINGS_AT_ONCE)
        self._set_aside_reported_at = time.monotonic()
        self._db_error_logged_at = 0.0
        # Set when the lease was taken again: writes made with the old token were refused.
        self._reassert_now = False
        # The event ``run`` stops on: set, this node is stopping.
        self.stop = asyncio.Event()

    @staticmethod
    def lease_ttl(timings: Timings) -> float:
        return max(2.0, 4 * timings.interval)

    async def run(self, stop: asyncio.Event) -> None:
        self.stop = stop
        while not stop.is_set():
            try:
                timings = await _db(targets.load_timings)
                self.token = await _db(
                    lease_acquire, name=LEASE_NAME, holder=self.holder, ttl_seconds=self.lease_ttl(timings)
                )
            except Exception:
                # The database is away (restarting): nobody can take the lease meanwhile.
                self._log_db_error("health monitor cannot reach the database")
                await _wait(stop, 1.0)
                continue
            if self.token is None:
                await _wait(stop, timings.interval)
                continue
            log.info("health monitor active", extra={"holder": self.holder, "epoch": self.token.epoch})
            try:
                await self._lead(stop, timings)
            finally:
                await self._stop_watchers()
                if stop.is_set() and self.token is not None:
                    with contextlib.suppress(Exception):
                        await _db(lease_release, token=self.token)
                self.token = None

    async def _lead(self, stop: asyncio.Event, timings: Timings) -> None:
        self.timings = timings
        loop = asyncio.get_running_loop()
        lost = asyncio.Event()
        helpers = [
            asyncio.create_task(self._keep_lease(stop, lost, timings), name="monitor-lease"),
            asyncio.create_task(self.loop_lag.run(), name="monitor-loop-lag"),
            asyncio.create_task(self._read_beats(stop), name="monitor-node-beats"),
        ]
        next_refresh = next_flush = 0.0
        try:
            while not stop.is_set() and not lost.is_set():
                now = loop.time()
                try:
                    if now >= next_refresh:
                        next_refresh = now + TOPOLOGY_REFRESH_SECONDS
                        await self._refresh_topology()
                    if now >= next_flush or self._reassert_now:
                        self._reassert_now = False
                        next_flush = now + FIGURES_FLUSH_SECONDS
                        await self._flush_figures()
                        await self._reassert_health()
                        self._report_set_aside_timeouts()
                except Exception:
                    # The database is away: keep watching with what is known, and try again
                    # every interval, so that the decisions made meanwhile are written
                    # (``_reassert_health``) as soon as it is back.
                    self._log_db_error("health monitor could not read or write the database")
                    next_refresh = next_flush = now
                await _wait_any(stop, lost, timings.interval)
        finally:
            for task in helpers:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _keep_lease(self, stop: asyncio.Event, lost: asyncio.Event, timings: Timings) -> None:
        """Renew the lease every interval on a thread of its own.

        Health writes and the bulk flush of probe figures share the monitor's one database
        thread; with thousands of peers a renewal queued behind them arrived after the
        lease expired, the monitor gave way and restarted every watcher at once.

        A renewal refused because the lease expired while the database was away is
        followed by an attempt to take it again: when nobody held it meanwhile (the epoch
        rose by one, ours), this monitor carries on with its watchers and their decisions.
        """
        loop = asyncio.get_running_loop()
        ttl = self.lease_ttl(timings)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="monitor-lease") as executor:
            try:
                while not stop.is_set():
                    late = self.loop_lag.worst_since(time.monotonic() - LATENESS_WINDOW_SECONDS)
                    renew = partial(_renew_in_thread, self.token, ttl, late * 1000)
                    renewed = await loop.run_in_executor(executor, renew)
                    if not renewed:
                        token = await loop.run_in_executor(executor, partial(_retake_in_thread, self.token, ttl))
                        if token is None:
                            log.warning("health monitor lost its lease", extra={"holder": self.holder})
                            lost.set()
                            return
                        log.warning(
                            "health monitor took its expired lease again",
                            extra={"holder": self.holder, "epoch": token.epoch},
                        )
                        self.token = token
                        # Decisions written meanwhile with the expired token were fenced
                        # off: write them again now rather than at the next flush.
                        self._reassert_now = True
                    await _wait(stop, timings.interval)
            finally:
                await loop.run_in_executor(executor, connections.close_all)

    async def _read_beats(self, stop: asyncio.Event) -> None:
        """Read the nodes' heartbeats every ``BEATS_READ_SECONDS`` on a thread of its own
        (never queued behind health writes), then let every server watcher decide again.

        A silence counts only from when this monitor could read the database: while the
        database was away nobody could beat, so a node's beat that is old on its return
        says nothing yet about the node.
        """
        loop = asyncio.get_running_loop()
        readable_since: float | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="monitor-beats") as executor:
            try:
                while not stop.is_set():
                    live_within = 2 * BEATS_READ_SECONDS + 1.0
                    try:
                        rows = await loop.run_in_executor(executor, partial(_beats_in_thread, live_within))
                    except Exception:
                        # Readings age instead: past BEAT_READING_FRESH_SECONDS they prove nothing.
                        readable_since = None
                        self._log_db_error("health monitor could not read the nodes' heartbeats")
                    else:
                        read_at = time.time()
                        readable_since = readable_since or read_at
                        self.node_beats = {
                            server_id: NodeBeat(
                                age=min(beat.age_seconds, read_at - readable_since),
                                read_at=read_at,
                                http_wait=beat.http_wait_ms / 1000,
                            )
                            for server_id, beat in rows.items()
                        }
                    for _, watcher, _ in list(self.server_watchers.values()):
                        await watcher.reconsider()
                    await _wait(stop, BEATS_READ_SECONDS)
            finally:
                await loop.run_in_executor(executor, connections.close_all)

    async def _refresh_topology(self) -> None:
        timings = await _db(targets.load_timings)
        server_timings = await _db(targets.load_server_timings)
        if timings != self.timings or server_timings != self.server_timings:
            # New probe settings: restart every watcher with them.
            self.timings, self.server_timings = timings, server_timings
            await self._stop_watchers()
        peers = {p.id: p for p in await _db(targets.load_peers)}
        self.peer_timings = replace(
            self.timings, heartbeat_interval=heartbeat_interval_for(self.timings.heartbeat_interval, len(peers))
        )
        servers = {s.id: s for s in await _db(targets.load_servers)}
        self._sync_watchers(self.peer_watchers, peers, self._start_peer, self.timings.interval)
        self._sync_watchers(self.server_watchers, servers, self._start_server, self.server_timings.interval)

    def _sync_watchers(self, running: dict, wanted: dict, start, interval: float) -> None:
        for target_id in list(running):
            target, _, task = running[target_id]
            fresh = wanted.get(target_id)
            # Restart when the address changed; health alone changes often and is ours.
            if fresh is None or _address(fresh) != _address(target):
                task.cancel()
                del running[target_id]
        new = [target for target_id, target in wanted.items() if target_id not in running]
        for delay, target in zip(start_delays(len(new), interval), new, strict=True):
            running[target.id] = start(target, delay)

    def _start_peer(self, target: PeerTarget, delay: float):
        watcher = PeerWatcher(
            target,
            self.peer_timings or self.timings,
            self._peer_transition,
            self.on_event,
            start_delay=delay,
            loop_lag=self.loop_lag,
            openings=self.peer_openings,
        )
        return target, watcher, asyncio.create_task(watcher.run(), name=f"watch-peer-{target.name}")

    def _start_server(self, target: ServerTarget, delay: float):
        watcher = ServerWatcher(
            target,
            self.server_timings,
            self._server_transition,
            self._server_degraded,
            beats=self.node_beats_of,
            start_delay=delay,
            loop_lag=self.loop_lag,
        )
        return target, watcher, asyncio.create_task(watcher.run(), name=f"watch-server-{target.name}")

    def node_beats_of(self, server_id: int) -> NodeBeat | None:
        return self.node_beats.get(server_id)

    async def _peer_transition(self, transition: Transition) -> None:
        await self._write(peer_health_changed, peer_id=transition.target_id, transition=transition)

    async def _server_transition(self, transition: Transition) -> None:
        if self.stop.is_set() and transition.health == Health.DOWN:
            # This node is stopping: a server (its own, above all, whose socket may be
            # closing) is not judged now; the monitor that takes the lease over judges it.
            log.warning("not judging a server while this node stops", extra={"server": transition.target_id})
            return
        await self._write(server_health_changed, server_id=transition.target_id, transition=transition)

    async def _server_degraded(self, change: DegradedChange) -> None:
        try:
            await _db(
                server_degraded_changed,
                server_id=change.target_id,
                degraded=change.degraded,
                at=_dt(change.at),
                reason=change.reason,
                lease=self.token,
            )
        except Exception:
            log.exception("could not record a server's degraded state", extra={"change": change})

    async def _write(self, service, *, transition: Transition, **ids: int) -> None:
        try:
            await _db(
                service,
                **ids,
                health=transition.health,
                at=_dt(transition.at),
                failed_at=_dt(transition.failed_at),
                error=transition.error,
                detection=transition.detection,
                lease=self.token,
            )
        except Exception:
            # The database may be briefly unavailable; ``_reassert_health`` writes the
            # decision again once it is back.
            log.exception("could not record a health change", extra={"transition": transition})

    async def _flush_figures(self) -> None:
        figures = [
            ProbeFigures(
                peer_id=peer_id,
                at=_dt(w.figures.at),
                latency_ms=w.figures.latency_ms,
                consecutive_successes=w.figures.successes,
                consecutive_failures=w.figures.failures,
            )
            for peer_id, (_, w, _) in self.peer_watchers.items()
            if isinstance(w, Watcher) and w.figures is not None
        ]
        with contextlib.suppress(Exception):
            await _db(peers_record_probes, figures)

    def _report_set_aside_timeouts(self) -> None:
        """Say so when the monitor itself is too slow for its probes (too many peers for the
        interval, CPU starved): probes are then set aside, and detection slows down."""
        count, self.loop_lag.set_aside = self.loop_lag.set_aside, 0
        now = time.monotonic()
        since, self._set_aside_reported_at = self._set_aside_reported_at, now
        if count:
            log.warning(
                "health monitor running late: probe time-outs set aside, not counted against peers",
                extra={
                    "set_aside": count,
                    "seconds": round(now - since, 1),
                    "loop_late_max_s": round(self.loop_lag.worst_since(since), 3),
                    "holder": self.holder,
                },
            )

    def _log_db_error(self, message: str) -> None:
        now = time.monotonic()
        if now - self._db_error_logged_at >= DB_ERROR_LOG_SECONDS:
            self._db_error_logged_at = now
            log.warning(message, exc_info=True, extra={"holder": self.holder})

    async def _reassert_health(self) -> None:
        """Re-send any decision the database does not show.

        A write can be lost (the database was briefly unavailable, the lease was being
        renewed); the watcher's tracker does not decide the same thing twice, so without
        this a peer could stay "up" in the database while every probe fails.
        """
        written = await _db(targets.load_health)
        now = time.time()
        for target_id, (_, watcher, _) in list(self.peer_watchers.items()):
            decided = watcher.tracker.health
            if decided == Health.UNKNOWN or written.get(("peer", target_id), decided) == decided:
                continue
            log.warning("re-asserting a health decision the database missed", extra={"peer": target_id})
            failed_at = (watcher.tracker.failing_since or now) if decided == Health.DOWN else None
            error = watcher.figures.error if watcher.figures else ""
            await self._peer_transition(Transition(target_id, decided, now, failed_at, error))
        degraded = await _db(targets.load_degraded)
        for target_id, (_, watcher, _) in list(self.server_watchers.items()):
            await self._reassert_server(watcher, written.get(("server", target_id)), target_id in degraded, now)

    async def _reassert_server(
        self, watcher: ServerWatcher, written: Health | None, degraded: bool, now: float
    ) -> None:
        decided = watcher.tracker.health
        if decided != Health.UNKNOWN and written is not None and written != decided:
            log.warning("re-asserting a health decision the database missed", extra={"server": watcher.target_id})
            failed_at = (watcher.judge.unanswered_since or now) if decided == Health.DOWN else None
            error = watcher.figures.error if watcher.figures else ""
            await self._server_transition(Transition(watcher.target_id, decided, now, failed_at, error))
        if decided == Health.UP and watcher.judge.degraded != degraded:
            log.warning("re-asserting a degraded state the database missed", extra={"server": watcher.target_id})
            change = DegradedChange(watcher.target_id, watcher.judge.degraded, now, watcher.judge.degraded_reason)
            await self._server_degraded(change)

    async def _stop_watchers(self) -> None:
        tasks = [task for registry in (self.peer_watchers, self.server_watchers) for _, _, task in registry.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.peer_watchers.clear()
        self.server_watchers.clear()


def heartbeat_interval_for(interval: float, peers: int) -> float:
    """The heartbeat interval to ask of each of ``peers`` peers: the policy's ``interval``,
    or longer when that many peers at that rate would exceed ``HEARTBEATS_PER_SECOND``.
    0 (heartbeats off) stays 0."""
    if not interval:
        return 0.0
    return max(interval, peers / HEARTBEATS_PER_SECOND)


def start_delays(count: int, interval: float) -> list[float]:
    """When each of ``count`` new watchers sends its first probe: evenly over one interval.

    A monitor that takes over (at start, from a dead node, after a settings change) starts
    every watcher at once. Started together, 4,000 watchers opened 4,000 connections in the
    same instant; the connections queued behind each other past the probe time-out and
    healthy peers were declared down (with their links switched over) in a storm that the
    monitor then could not recover from. Spread evenly, the first round costs what any
    later round does. HAProxy spreads its first checks over the interval in the same way.
    """
    return [position * interval / count for position in range(count)]


def _address(target: PeerTarget | ServerTarget) -> tuple:
    return (target.host, target.port) if isinstance(target, PeerTarget) else (target.base_url,)


async def _db(function, *args, **kwargs):
    """Run a database function on the monitor's database thread; after an error, drop that
    thread's connection if it is broken, so the next call connects afresh. The thread lives
    as long as the process and no request cycle closes its connection: without this a
    restarted database left the monitor failing on a dead connection for good."""
    return await sync_to_async(_reconnecting(function))(*args, **kwargs)


def _reconnecting(function):
    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception:
            close_old_connections()
            raise

    return call


def _renew_in_thread(token: LeaseToken, ttl_seconds: float, late_ms: float) -> bool:
    try:
        return lease_renew(token=token, ttl_seconds=ttl_seconds, late_ms=late_ms)
    except Exception:
        # The database is away: try again next interval. Writes stay fenced meanwhile (each
        # checks the lease in its own transaction), so carrying on risks nothing.
        close_old_connections()
        log.warning("could not renew the monitor's lease", exc_info=True)
        return True


def _retake_in_thread(token: LeaseToken, ttl_seconds: float) -> LeaseToken | None:
    """Take the lease again if nobody held it since ours expired; None otherwise."""
    try:
        fresh = lease_acquire(name=token.name, holder=token.holder, ttl_seconds=ttl_seconds)
    except Exception:
        close_old_connections()
        return None
    if fresh is not None and fresh.epoch == token.epoch + 1:
        return fresh
    return None


def _beats_in_thread(live_within: float):
    try:
        return node_heartbeats_read(live_within=live_within)
    except Exception:
        close_old_connections()
        raise


async def _wait_any(stop: asyncio.Event, lost: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` unless ``stop`` or ``lost`` is set first."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
