"""The one factory of redis-py clients: every direct Redis command of the product goes
through :func:`shared_redis` (the live-update sequence and run id, drain locks, the task
queue's age, readiness), so that one place knows whether Redis is a single server
(``REDIS_URL``) or a master found through Sentinel (``REDIS_SENTINELS``).

Celery and the channel layer keep their own connections, configured from the same
settings (collabadmin/settings.py). Short time-outs: a Redis outage must slow nothing
down, since every caller treats Redis as optional (the database is the truth).
"""

from __future__ import annotations

from functools import cache

import redis
from django.conf import settings

from common.redis_config import SentinelConfig

TIMEOUT_SECONDS = 1.0


@cache
def _client_for(target: str | SentinelConfig) -> redis.Redis:
    if isinstance(target, SentinelConfig):
        return target.client(timeout=TIMEOUT_SECONDS)
    return redis.Redis.from_url(target, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS)


def redis_target() -> str | SentinelConfig:
    """What the settings point at now: the Sentinel configuration, else ``REDIS_URL``."""
    sentinel = getattr(settings, "REDIS_SENTINEL", None)
    return sentinel if sentinel is not None else settings.REDIS_URL


def shared_redis() -> redis.Redis:
    """This process's client of the configured Redis (one per target, so tests that point
    the project at another Redis get a client for it). With Sentinel it follows the master
    through a failover."""
    return _client_for(redis_target())
