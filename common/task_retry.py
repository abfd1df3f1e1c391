"""How the Celery tasks that are safe to run again retry after a transient error."""

from __future__ import annotations

import redis
from django.db import InterfaceError, OperationalError

# Errors that a moment later may be gone: the database restarting or busy, Redis (our own
# keys: drain locks, the live sequence) restarting.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)

# Bounded retries with exponential back-off and jitter, for the tasks that are safe to run
# again (``@shared_task(..., **RETRY_TRANSIENT)``): at most 3 more tries, about 1, 2 and 4 s
# later (never more than 30 s apart), then the task fails and is logged. A retry keeps the
# task's expiry, so a retry that comes too late is dropped like a late first try. Peers that
# do not answer are not retried here: the services give up cleanly and the next event, the
# next switchover or the periodic safety net redoes the work.
RETRY_TRANSIENT: dict[str, object] = {
    "autoretry_for": TRANSIENT_ERRORS,
    "max_retries": 3,
    "retry_backoff": True,
    "retry_backoff_max": 30,
    "retry_jitter": True,
}
