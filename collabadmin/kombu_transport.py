"""kombu's Redis transports (one server and Sentinel), with one bug made harmless.

When a worker loses its broker while it holds unacknowledged messages, Celery closes the
lost connection; kombu then closes its channel, which first tries to put those messages
back on the queue through a fresh connection pool. By then kombu has already detached the
connection from its transport, so building the pool fails with ``AttributeError: 'NoneType'
object has no attribute 'hostname'``. Celery takes that for an unrecoverable error and
shuts the worker down (collabadmin/celery_worker.py then makes it exit, its supervisor
starts another: 10 to 20 s without a worker). Seen in the fault suite after quick Redis
restarts (seed 462225) and, with a thread pool, on every Sentinel failover that finds the
worker holding a task (tests/test_redis_sentinel.py).

Here a detached connection is what it is, a connection error. kombu ignores connection
errors while closing a lost connection, so the worker reconnects (to the promoted replica,
with Sentinel) and carries on. The messages it held stay in Redis's table of unacknowledged
messages and are delivered again after the visibility time-out, like those of any worker
that lost Redis mid-task; every task is safe to run twice.

Registered under kombu's own transport names (``redis``, ``rediss``, ``sentinel``) by
:func:`register`, which the Celery app calls before it connects.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis


class _DetachedIsDisconnected:
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:  # type: ignore[attr-defined]
            raise redis.exceptions.ConnectionError("the broker connection is closed")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]


class Channel(_DetachedIsDisconnected, kombu_redis.Channel):
    """kombu's Redis channel."""


class SentinelChannel(_DetachedIsDisconnected, kombu_redis.SentinelChannel):
    """kombu's Redis Sentinel channel."""


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


def register() -> None:
    """Make kombu use these transports for ``redis://``, ``rediss://``, ``redis+socket://``
    and ``sentinel://`` URLs."""
    TRANSPORT_ALIASES.update(
        {
            "redis": f"{__name__}:Transport",
            "rediss": f"{__name__}:Transport",
            "sentinel": f"{__name__}:SentinelTransport",
        }
    )
