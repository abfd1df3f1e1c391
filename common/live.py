"""Live updates: the one module that owns WebSocket group names and event payloads.

Services call :func:`publish` inside their transaction; the broadcast leaves only after
the commit, so nobody hears of a change that rolled back. Each event carries a sequence
number from one Redis counter, so a desktop can tell when it missed one and reload the
snapshot. A failed broadcast (Redis down) is logged, never raised: the database is the
truth, and every desktop resynchronises from the snapshot when it reconnects.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from channels.layers import get_channel_layer
from django.db import transaction

from common.redis_client import shared_redis

logger = logging.getLogger(__name__)

# The administrators' desktops (``/ws/status/``). Publishers name this audience; which
# channel group an event really goes to is decided here (:func:`channel_groups`).
STATUS_GROUP = "status"
# Session and agent events are most of the traffic (one per session change, 50 a second
# in a busy centre) and the overview shows neither: they go to a group of their own, which
# a status socket joins unless its page ignores them (``/ws/status/?ignore=...``). 200
# overview pages then receive none of them instead of dropping each in the browser
# (docs/performance.md, issue 18).
SESSIONS_GROUP = "status.sessions"
TOPIC_GROUPS: dict[str, frozenset[str]] = {SESSIONS_GROUP: frozenset({"session.changed", "agent.changed"})}
SEQUENCE_KEY = "collabadmin:live:seq"


def channel_groups(event_type: str, groups: Iterable[str]) -> tuple[str, ...]:
    """The channel groups an event for ``groups`` goes to: the status audience's events of a
    topic go to that topic's group instead of the status group."""
    topic = next((name for name, types in TOPIC_GROUPS.items() if event_type in types), None)
    return tuple(topic if group == STATUS_GROUP and topic else group for group in groups)


def status_socket_groups(ignored: Iterable[str]) -> list[str]:
    """The groups a status socket joins when its page ignores the event types ``ignored``:
    the status group always, a topic's group unless every one of its types is ignored."""
    skip = frozenset(ignored)
    return [STATUS_GROUP, *(name for name, types in TOPIC_GROUPS.items() if not types <= skip)]


def agent_group(agent_id: int) -> str:
    """The group of one agent's desktops: its own sessions and alerts only."""
    return f"agent.{agent_id}"


def user_group(user_id: int) -> str:
    """Every socket of one user: told to re-check its access when the user changes."""
    return f"user.{user_id}"


def _tell_after_commit(group: str, message_type: str) -> None:
    """After the commit, one un-numbered message to one group's sockets (a control
    message, not an event: no sequence number). Redis down: logged by the sender."""
    transaction.on_commit(lambda: _sender.post((group,), {"type": message_type}, numbered=False))


def access_changed(user_id: int) -> None:
    """After the commit: every socket of the user re-checks whether it may still listen
    (lost while Redis was away: the heartbeat's own re-check closes it within seconds)."""
    _tell_after_commit(user_group(user_id), "access.check")


def token_group(token_id: int) -> str:
    """Every socket opened with one API token: closed when the token is revoked."""
    return f"token-{token_id}"


def close_token_sockets(token_id: int) -> None:
    """After the commit: every socket opened with the token closes at once (lost while
    Redis was away: the token's timer re-reads the row and still closes them)."""
    _tell_after_commit(token_group(token_id), "token.revoked")


def reserve_sequence(count: int = 1) -> int:
    """Reserve ``count`` numbers of the one sequence shared by every process; returns the
    last of them (the first is ``last - count + 1``).

    Redis keeps nothing on disk here, so after a restart the counter is gone. It is
    re-seeded from the clock (microseconds), which is always above any number handed out
    before the restart unless a million events a second were sent: the sequence keeps
    increasing across Redis restarts and clients need no special case.
    """
    client = shared_redis()
    with client.pipeline(transaction=False) as pipe:
        pipe.set(SEQUENCE_KEY, time.time_ns() // 1000, nx=True)
        pipe.incrby(SEQUENCE_KEY, count)
        _, value = pipe.execute()
    return int(value)


def current_sequence() -> int:
    """The last number handed out; a snapshot carries it so clients drop older events, and
    a shared fragment render the number it reflects (console/live_fragments.py).

    After a Redis restart the counter is re-seeded from the clock here too, as in
    :func:`reserve_sequence`: read as 0 until the next event, it would go back below the
    numbers pages already hold, and a page would drop every answer as older than what it
    shows (or be served a render from before the restart).
    """
    client = shared_redis()
    with client.pipeline(transaction=False) as pipe:
        pipe.set(SEQUENCE_KEY, time.time_ns() // 1000, nx=True)
        pipe.get(SEQUENCE_KEY)
        _, value = pipe.execute()
    return int(value)


_run_id_cache: tuple[float, str | None] = (0.0, None)
RUN_ID_CACHE_SECONDS = 1.0


def redis_run_id() -> str | None:
    """The Redis server's ``run_id``: it changes when Redis restarts, losing subscriptions
    and any event sent meanwhile. Snapshots and heartbeats carry it so a desktop notices
    the restart and reloads its snapshot. None while Redis cannot be reached.

    Cached for a second per process: hundreds of sockets ask every few seconds.
    """
    global _run_id_cache
    at, run_id = _run_id_cache
    now = time.monotonic()
    if now - at < RUN_ID_CACHE_SECONDS and run_id is not None:
        return run_id
    try:
        run_id = str(shared_redis().info("server")["run_id"])
    except Exception:  # Redis down or restarting: the next heartbeat asks again.
        run_id = None
    _run_id_cache = (now, run_id)
    return run_id


def publish(event_type: str, data: dict[str, Any], *, groups: Iterable[str] = (STATUS_GROUP,)) -> None:
    """Broadcast ``{"type", "seq", "data"}`` to ``groups`` once the current transaction commits."""
    targets = channel_groups(event_type, groups)
    transaction.on_commit(lambda: send_now(event_type, data, targets))


SEND_TIMEOUT_SECONDS = 5.0
# Broadcasts waiting for the sender; a caller that finds it full waits up to
# SEND_TIMEOUT_SECONDS (Redis far behind), then the event is dropped and logged.
MAX_QUEUED = 10_000
# Events numbered and sent per round: one sequence reservation for all of them.
BATCH = 500


@dataclass
class _Outgoing:
    groups: tuple[str, ...]
    message: dict[str, Any]
    numbered: bool  # a live event: gets its sequence number when it leaves


class _Sender:
    """One event loop on a thread of its own that does every broadcast of this process.

    ``async_to_sync`` from plain sync code (a Celery worker, a command) makes a new event
    loop per call, and the pub/sub channel layer a new Redis connection per loop: 3.5 ms
    a broadcast. One long-lived loop keeps the connection. Callers only queue the message
    (microseconds: a queue drain commits a thousand routes a second); the loop sends the
    queue in order, numbering a batch of events with one Redis round trip, so events leave
    in commit order with increasing numbers. A forked child (Celery's prefork pool) starts
    afresh: threads do not survive a fork, and the parent's queue is the parent's.
    ``flush`` waits until everything queued has left (tests, and process exit).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: deque[_Outgoing] = deque()
        self._in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._pid = 0

    def _start(self) -> asyncio.AbstractEventLoop:
        """The loop and its pump, started on first use in this process (under ``_lock``)."""
        if self._loop is None or self._pid != os.getpid():
            loop = asyncio.new_event_loop()
            self._wake = asyncio.Event()
            self._queue.clear()
            self._in_flight = 0
            loop.create_task(self._pump())
            threading.Thread(target=loop.run_forever, name="live-sender", daemon=True).start()
            self._loop, self._pid = loop, os.getpid()
        return self._loop

    def post(self, groups: tuple[str, ...], message: dict[str, Any], *, numbered: bool) -> None:
        """Queue one broadcast; returns at once unless the queue is full."""
        with self._changed:
            loop = self._start()
            if not self._changed.wait_for(lambda: len(self._queue) < MAX_QUEUED, timeout=SEND_TIMEOUT_SECONDS):
                logger.warning("live update %s not broadcast: %s queued", message.get("type"), MAX_QUEUED)
                return
            self._queue.append(_Outgoing(groups, message, numbered))
            first = len(self._queue) == 1
        if first:
            assert self._wake is not None
            loop.call_soon_threadsafe(self._wake.set)

    def flush(self, timeout: float = SEND_TIMEOUT_SECONDS) -> bool:
        """Wait until every queued broadcast has left (or failed); ``False`` on time-out."""
        with self._changed:
            if self._loop is None or self._pid != os.getpid():
                return True
            return self._changed.wait_for(lambda: not self._queue and not self._in_flight, timeout=timeout)

    def _take(self) -> list[_Outgoing]:
        with self._changed:
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), BATCH))]
            self._in_flight = len(batch)
            self._changed.notify_all()
            return batch

    def _done(self) -> None:
        with self._changed:
            self._in_flight = 0
            self._changed.notify_all()

    async def _pump(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while batch := self._take():
                try:
                    await self._send(batch)
                finally:
                    self._done()

    async def _send(self, batch: list[_Outgoing]) -> None:
        layer = get_channel_layer()
        numbered = [item for item in batch if item.numbered]
        try:
            if numbered:
                # Redis is local and answers in microseconds; blocking this thread's loop
                # for it holds up nothing but broadcasts, which need the number first.
                first = reserve_sequence(len(numbered)) - len(numbered) + 1
                for seq, item in enumerate(numbered, start=first):
                    item.message["event"]["seq"] = seq
            for item in batch:
                for group in item.groups:
                    async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                        await layer.group_send(group, item.message)
        except Exception:  # Redis down or restarting: clients resync on reconnect.
            kinds = sorted({str(item.message.get("event", item.message).get("type")) for item in batch})
            logger.warning(
                "live updates %s not broadcast (%s in this batch)", ", ".join(kinds), len(batch), exc_info=True
            )


_sender = _Sender()
# A command that publishes and exits (seed_demo, a one-off task) still gets its events out.
atexit.register(_sender.flush, 2.0)


def send_now(event_type: str, data: dict[str, Any], groups: Iterable[str]) -> None:
    """Queue one live event for ``groups``; it gets its sequence number when it leaves."""
    event = {"type": event_type, "seq": None, "data": data}
    _sender.post(tuple(groups), {"type": "live.event", "event": event}, numbered=True)


def flush(timeout: float = SEND_TIMEOUT_SECONDS) -> bool:
    """Wait until this process's queued broadcasts have left; ``False`` on time-out."""
    return _sender.flush(timeout)
