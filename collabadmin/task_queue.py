"""How long work has waited in a Celery queue: the evidence that no worker is taking it.

Every task message carries the time it was sent (a header added as it is published,
:func:`stamp_sent_at`). kombu's Redis transport keeps a queue as a Redis list, pushes on
the left and workers pop from the right, so the message at the right end is the next one
to be taken: its age is how long the queue has gone without a taker. Beat sends work every
second (the transit time-out tick), so in a running installation a queue that nobody takes
from shows an age that grows within a second.

Read by the worker's own watchdog (collabadmin/worker_watchdog.py), ``/readyz`` and
``/metrics``, through the product's one Redis client (with Sentinel: the current master).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

SENT_AT_HEADER = "collabadmin_sent_at"
# kombu keeps messages of priority 3, 6 and 9 in lists of their own, named
# "<queue>\x06\x16<priority>"; priority 0 (the default) is the queue's own name.
_PRIORITY_SEPARATOR = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)
# Work that has waited this long while a worker had room to take it means that worker is
# not consuming (a healthy one takes a message within milliseconds). Also the age from
# which /readyz reports the queue as stalled.
STALLED_AFTER_SECONDS = 10.0


def stamp_sent_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Celery's ``before_task_publish`` handler: the message remembers when it was sent."""
    if headers is not None:
        headers.setdefault(SENT_AT_HEADER, time.time())


@dataclass(frozen=True)
class QueueState:
    queue: str
    waiting: int
    # How long the next message to be taken has waited; None when the queue is empty (or
    # its head was sent by something that does not stamp messages).
    oldest_wait_seconds: float | None

    @property
    def stalled(self) -> bool:
        return self.oldest_wait_seconds is not None and self.oldest_wait_seconds >= STALLED_AFTER_SECONDS

    def as_dict(self) -> dict[str, object]:
        age = self.oldest_wait_seconds
        return {
            "queue": self.queue,
            "waiting": self.waiting,
            "oldest_wait_seconds": round(age, 1) if age is not None else None,
            "stalled": self.stalled,
        }


def watched_queues() -> list[str]:
    """The Celery queues someone must be taking work from: the default queue (the worker)
    and, when notifications have their own (``NOTIFY_QUEUE``), theirs (the notifier)."""
    from django.conf import settings

    queues = [settings.CELERY_TASK_DEFAULT_QUEUE]
    notify = getattr(settings, "NOTIFY_QUEUE", "")
    if notify and notify not in queues:
        queues.append(notify)
    return queues


def _lists(queue: str) -> list[str]:
    return [queue, *(f"{queue}{_PRIORITY_SEPARATOR}{step}" for step in _PRIORITY_STEPS)]


def _sent_at(raw: bytes | None) -> float | None:
    if raw is None:
        return None
    try:
        sent_at = json.loads(raw).get("headers", {}).get(SENT_AT_HEADER)
    except (ValueError, AttributeError):
        return None
    return float(sent_at) if isinstance(sent_at, int | float) else None


def queue_state(client: redis.Redis, queue: str) -> QueueState:
    """The queue's length and the age of its next message (one round trip). Raises
    ``redis.RedisError`` when Redis does not answer."""
    names = _lists(queue)
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.llen(name)
            pipe.lindex(name, -1)
        replies = pipe.execute()
    now = time.time()
    waiting = sum(int(length) for length in replies[0::2])
    ages = [max(0.0, now - sent_at) for raw in replies[1::2] if (sent_at := _sent_at(raw)) is not None]
    return QueueState(queue=queue, waiting=waiting, oldest_wait_seconds=max(ages) if ages else None)
