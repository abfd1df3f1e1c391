"""The Celery worker watches itself: work waiting, room to take it, nothing taken → leave.

A worker can stay alive and connected yet stop taking messages (kombu's Redis transport
after quick Redis restarts, celery/celery#8030; a consumer cancelled by a remote control
command). Nothing then drains the queue, and callers wait for ever. Once ready, the
worker's main process runs :class:`Watchdog` on a thread of its own; every second it
reads the head of each queue the worker was started to consume (collabadmin/task_queue.py)
and decides the worker is **stuck** when, on two checks in a row, all three hold for
``STALLED_AFTER_SECONDS``:

* the next message of one of its queues has waited that long;
* the worker has room for it (fewer tasks reserved than its prefetch limit: a worker whose
  slots are all busy with long tasks is busy, not stuck);
* the worker has received no message for that long.

A stuck worker starts Celery's warm shutdown with a failure code and leaves at the latest
``EXIT_GRACE_SECONDS`` later (collabadmin/celery_worker.py), so that its supervisor starts
a fresh one (systemd ``Restart=always``, a container's restart policy, ``bin/run``).
Nothing is lost: messages are acknowledged late and every task is safe to run twice.

For supervisors that cannot see inside the process, each check also writes a small status
file (``COLLABADMIN_WORKER_STATUS_FILE``) that ``manage.py worker_liveness`` reads, and
under systemd (``NOTIFY_SOCKET``) it pings the unit's watchdog (``WatchdogSec=``) only
while the worker is healthy: a worker that is stuck or whose process hangs is restarted.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from celery.platforms import EX_FAILURE
from celery.worker import state as worker_state

from collabadmin.task_queue import STALLED_AFTER_SECONDS, QueueState, queue_state
from common.redis_client import shared_redis

logger = logging.getLogger(__name__)

CHECK_EVERY_SECONDS = 1.0
# The warm shutdown of a stuck worker gets this long to finish the tasks in hand.
EXIT_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class Observation:
    """What one check saw."""

    queues: tuple[QueueState, ...]
    idle_seconds: float  # since the last message received (or since the worker was ready)
    reserved: int  # tasks received and not finished
    limit: int  # the prefetch limit (0: none)


def stuck_reason(seen: Observation) -> str | None:
    """Why the worker is stuck, or None when it is not (or cannot tell)."""
    if seen.idle_seconds < STALLED_AFTER_SECONDS:
        return None
    if seen.limit and seen.reserved >= seen.limit:
        return None  # every slot busy: long tasks, not a stuck consumer
    for queue in seen.queues:
        if queue.stalled:
            return (
                f"work has waited {queue.oldest_wait_seconds:.0f} s in queue {queue.queue!r} while this worker "
                f"had room ({seen.reserved} of {seen.limit or 'unlimited'} reserved) and received nothing "
                f"for {seen.idle_seconds:.0f} s"
            )
    return None


def status_file() -> Path:
    from django.conf import settings

    return Path(settings.WORKER_STATUS_FILE)


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Replace the status file at once (readers never see half of it)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(json.dumps(status))
        os.replace(partial, path)
    except OSError:
        logger.warning("cannot write the worker status file %s", path, exc_info=True)


def notify_systemd(message: str) -> None:
    """``sd_notify``: one datagram to systemd's socket, when the unit gave us one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), address)
    except OSError:
        logger.warning("cannot notify systemd on %s", address, exc_info=True)


@dataclass
class Watchdog:
    """Runs in the worker's main process from ``worker_ready`` on."""

    queues: tuple[str, ...]
    prefetch_limit: Callable[[], int]
    path: Path
    leave: Callable[[str], None]
    last_received: float = field(default_factory=time.monotonic)
    suspected: bool = False  # the last check found the worker stuck
    stuck_since: float | None = None

    def received(self) -> None:
        self.last_received = time.monotonic()

    def observe(self) -> Observation | None:
        try:
            states = tuple(queue_state(shared_redis(), name) for name in self.queues)
        except redis.RedisError:
            return None  # Redis away: the worker's own connection copes; nothing to judge
        return Observation(
            queues=states,
            idle_seconds=time.monotonic() - self.last_received,
            reserved=len(worker_state.reserved_requests),
            limit=self.prefetch_limit(),
        )

    def check(self) -> str | None:
        """One round: observe, write the status, tell systemd; the reason if stuck.

        Stuck only when two checks in a row say so: one look can catch, in the instant
        before a healthy worker takes it, an old message put back on the queue (kombu
        restores unacknowledged messages with their first send time)."""
        seen = self.observe()
        suspect = stuck_reason(seen) if seen is not None else None
        reason = suspect if suspect and self.suspected else None
        self.suspected = suspect is not None
        if reason and self.stuck_since is None:
            self.stuck_since = time.time()
        write_status(self.path, self.status(seen, reason))
        if reason is None:
            notify_systemd("WATCHDOG=1")
        return reason

    def status(self, seen: Observation | None, reason: str | None) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "state": "stuck" if reason else "running",
            "updated_at": time.time(),
            "stuck_since": self.stuck_since,
            "reason": reason,
            "queues": [queue.as_dict() for queue in seen.queues] if seen else None,
            "idle_seconds": round(seen.idle_seconds, 1) if seen else None,
            "reserved": seen.reserved if seen else None,
            "limit": seen.limit if seen else None,
        }

    def run(self) -> None:
        notify_systemd("READY=1")
        while True:
            reason = self.check()
            if reason:
                logger.critical("this worker takes no work: %s; leaving for a fresh one", reason)
                notify_systemd(f"STATUS=stuck: {reason}")
                self.leave(reason)
                return
            time.sleep(CHECK_EVERY_SECONDS)


def leave_stuck_worker(reason: str) -> None:
    """Begin Celery's warm shutdown with a failure code (the consumer's loop sees the flag
    within a second); if it has not finished ``EXIT_GRACE_SECONDS`` later, exit anyway."""
    worker_state.should_stop = EX_FAILURE
    threading.Event().wait(EXIT_GRACE_SECONDS)
    logger.critical("still shutting down %.0f s after being found stuck: exiting", EXIT_GRACE_SECONDS)
    logging.shutdown()
    os._exit(EX_FAILURE)


# --- Liveness, judged from outside the process (manage.py worker_liveness, bin/run) ---------
# A running worker rewrites its status every second; a starting one may wait this long for
# the broker before it is ready.
STALE_AFTER_SECONDS = 10.0
START_GRACE_SECONDS = 120.0


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def liveness_problem(status: dict[str, Any] | None, *, now: float) -> str | None:
    """Why the worker that wrote ``status`` should be restarted, or None when it is live."""
    if status is None:
        return "no worker status: not started yet, or another COLLABADMIN_WORKER_STATUS_FILE"
    age = now - float(status.get("updated_at") or 0)
    if status.get("state") == "starting":
        return None if age < START_GRACE_SECONDS else f"still not ready {age:.0f} s after starting"
    if age > STALE_AFTER_SECONDS:
        return f"status not updated for {age:.0f} s: the worker process is hung"
    if status.get("state") == "stuck":
        return f"stuck: {status.get('reason')}"
    return None
