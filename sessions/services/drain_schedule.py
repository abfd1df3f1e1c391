"""Whether a queue drain is already on its way: one drain task for a burst of callers.

Kept apart from ``drain.py`` (which routes through the Media Blender and records the
routes) because the follow-ups module, which the routing services import, asks it before
sending a drain task.
"""

from __future__ import annotations

import contextlib

import redis

from common.redis_client import shared_redis

KEY_PREFIX = "collabadmin:drain:"  # shared with the drain's own lock keys (drain.py)

# A drain task sent but not yet started is marked for this long; the mark is cleared when
# the task starts, and expires by itself if the task is lost (worker killed, broker lost).
SCHEDULED_SECONDS = 5


def _scheduled_key(server_id: int) -> str:
    return f"{KEY_PREFIX}{server_id}:scheduled"


def drain_schedule_wanted(server_id: int) -> bool:
    """Whether to send a drain task for the server now: ``False`` when one is already sent
    and has not started yet (it will see every session committed before it starts).
    A caller request each sends one otherwise, and at a few hundred requests a second the
    worker did little but drain the same queue over and over. Without Redis: ``True``."""
    try:
        return bool(shared_redis().set(_scheduled_key(server_id), 1, nx=True, ex=SCHEDULED_SECONDS))
    except redis.RedisError:
        return True


def drain_started(server_id: int) -> None:
    """A drain is starting (whatever asked for it): a change committed from now on needs a
    task of its own."""
    with contextlib.suppress(redis.RedisError):
        shared_redis().delete(_scheduled_key(server_id))
