"""The process's one Redis client for our own keys (live-update sequence, drain locks).

Celery and the channel layer keep their own connections; this one serves the few direct
commands the services send. Short time-outs: a Redis outage must slow nothing down, since
every caller treats Redis as optional (the database is the truth).
"""

from __future__ import annotations

from functools import cache

import redis
from django.conf import settings

TIMEOUT_SECONDS = 1.0


@cache
def _client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS)


def shared_redis() -> redis.Redis:
    """The client for ``settings.REDIS_URL`` (one per URL, so tests that point the project
    at another Redis get a client for it)."""
    return _client_for(settings.REDIS_URL)
