"""One number, in Redis, that moves whenever any user's access may have changed.

What it is for: a node that remembers, to save work, that a log-in was let see something
(collabadmin/fragment_fast_path.py) must forget it when that user's access changes, on
whichever node the change was made. Rather than tell every node about every user, any
change moves this one counter (saved or deleted users, groups or permissions changed:
failover/access_changes.py; a log-out), and a remembered answer is trusted only while the
counter reads as it did when it was remembered. Changes are rare (log-ins included, which
save the user), so forgetting everything on each costs little: each watcher's next fetch
goes through Django once.

Read at most every :data:`CACHE_SECONDS` per process. Redis unreachable: None, which
trusts nothing (callers go the slow, checked way).
"""

from __future__ import annotations

import logging
import threading
import time

from django.db import transaction

from common.redis_client import shared_redis

logger = logging.getLogger(__name__)

KEY = "collabadmin:access:epoch"
CACHE_SECONDS = 0.5

_lock = threading.Lock()
_cached: tuple[float, int | None] = (-CACHE_SECONDS, None)


def bump_after_commit() -> None:
    """Move the counter once the current transaction commits (at once outside one)."""
    transaction.on_commit(_bump)


def _bump() -> None:
    global _cached
    try:
        shared_redis().incr(KEY)
    except Exception:  # Redis away: what was remembered still expires on its own.
        logger.warning("access change not counted: Redis unreachable", exc_info=True)
    with _lock:
        _cached = (-CACHE_SECONDS, None)  # this process sees its own change at once


def current() -> int | None:
    """The counter (0 before any change); None while Redis cannot be reached."""
    global _cached
    now = time.monotonic()
    with _lock:
        at, value = _cached
        if now - at < CACHE_SECONDS and value is not None:
            return value
    try:
        value = int(shared_redis().get(KEY) or 0)
    except Exception:  # noqa: BLE001 (unreachable: trust nothing)
        value = None
    with _lock:
        _cached = (now, value)
    return value
