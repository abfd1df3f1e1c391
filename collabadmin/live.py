"""Live updates: the one module that owns WebSocket group names and event payloads.

Services call :func:`publish` inside their transaction; the broadcast leaves only after
the commit, so nobody hears of a change that rolled back. Each event carries a sequence
number from one Redis counter, so a desktop can tell when it missed one and reload the
snapshot. A failed broadcast (Redis down) is logged, never raised: the database is the
truth, and every desktop resynchronises from the snapshot when it reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from channels.layers import get_channel_layer
from django.db import transaction

from collabadmin.redis_client import shared_redis

logger = logging.getLogger(__name__)

STATUS_GROUP = "status"
SEQUENCE_KEY = "collabadmin:live:seq"


def agent_group(agent_id: int) -> str:
    """The group of one agent's desktops: its own sessions and alerts only."""
    return f"agent.{agent_id}"


def user_group(user_id: int) -> str:
    """Every socket of one user: told to re-check its access when the user changes."""
    return f"user.{user_id}"


def access_changed(user_id: int) -> None:
    """After the commit: every socket of the user re-checks whether it may still listen."""

    def send() -> None:
        try:
            _sender.send((user_group(user_id),), {"type": "access.check"})
        except Exception:  # Redis down: the heartbeat's own re-check closes it within seconds.
            logger.warning("access change of user %s not broadcast", user_id, exc_info=True)

    transaction.on_commit(send)


def next_sequence() -> int:
    """The next number of the one sequence shared by every process.

    Redis keeps nothing on disk here, so after a restart the counter is gone. It is
    re-seeded from the clock (microseconds), which is always above any number handed out
    before the restart unless a million events a second were sent: the sequence keeps
    increasing across Redis restarts and clients need no special case.
    """
    client = shared_redis()
    with client.pipeline(transaction=False) as pipe:
        pipe.set(SEQUENCE_KEY, time.time_ns() // 1000, nx=True)
        pipe.incr(SEQUENCE_KEY)
        _, value = pipe.execute()
    return int(value)


def current_sequence() -> int:
    """The last number handed out; a snapshot carries it so clients drop older events."""
    return int(shared_redis().get(SEQUENCE_KEY) or 0)


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
    targets = tuple(groups)
    transaction.on_commit(lambda: send_now(event_type, data, targets))


SEND_TIMEOUT_SECONDS = 5.0


class _Sender:
    """One event loop on a thread of its own that does every broadcast of this process.

    ``async_to_sync`` from plain sync code (a Celery worker, a command) makes a new event
    loop per call, and the pub/sub channel layer a new Redis connection per loop: 3.5 ms
    a broadcast, most of a queue drain's time. One long-lived loop keeps the connection.
    A forked child (Celery's prefork pool) gets a loop of its own: threads do not survive
    a fork.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="live-sender", daemon=True).start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def send(self, groups: tuple[str, ...], message: dict[str, Any]) -> None:
        layer = get_channel_layer()

        async def send_all() -> None:
            for group in groups:
                await layer.group_send(group, message)

        future = asyncio.run_coroutine_threadsafe(send_all(), self.loop())
        try:
            future.result(timeout=SEND_TIMEOUT_SECONDS)  # in order, and the caller knows it left
        except BaseException:
            future.cancel()
            raise


_sender = _Sender()


def send_now(event_type: str, data: dict[str, Any], groups: Iterable[str]) -> None:
    try:
        event = {"type": event_type, "seq": next_sequence(), "data": data}
        _sender.send(tuple(groups), {"type": "live.event", "event": event})
    except Exception:  # Redis down or restarting: clients resync on reconnect.
        logger.warning("live update %s not broadcast", event_type, exc_info=True)
