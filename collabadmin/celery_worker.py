"""The ``celery worker`` process: Celery's own, but it never stays alive without working.

**It leaves promptly after an unrecoverable error**, so that its supervisor starts a fresh
one. Seen in our fault-injection suite (seed 462225): Redis restarted twice within seconds,
and kombu's Redis transport raised ``AttributeError: 'NoneType' object has no attribute
'hostname'`` while closing the lost connection (a kombu bug as old as kombu 3). Celery logs
"Unrecoverable error" and begins a warm shutdown, which then hung: the process stayed
alive, consumed nothing, and the queue stopped draining though agents were free. A
supervisor restarts a process that exits, not one that hangs. So after such an error the
warm shutdown gets ``UNRECOVERABLE_EXIT_SECONDS`` to finish the tasks in hand, then the
process exits with Celery's failure code. Nothing is lost: messages are acknowledged late,
and every task is safe to run twice.

**It leaves when it stops taking work** while staying connected (collabadmin/worker_watchdog.py):
once ready, a watchdog thread compares the age of the work waiting in its queues with what
the worker received, writes the status file that ``manage.py worker_liveness`` reads, and
pings systemd's watchdog while all is well.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from celery import signals
from celery.apps.worker import Worker as CeleryWorker
from celery.platforms import EX_FAILURE
from django.core.exceptions import ImproperlyConfigured

from collabadmin import worker_watchdog

logger = logging.getLogger(__name__)

UNRECOVERABLE_EXIT_SECONDS = 10.0


class Worker(CeleryWorker):
    def setup_instance(self, queues: Any = None, notifier: bool = False, **kwargs: Any) -> None:
        # --notifier (collabadmin/celery.py): the notification tasks' queue instead of -Q.
        if notifier:
            from django.conf import settings

            if not settings.NOTIFY_QUEUE:
                raise ImproperlyConfigured("--notifier needs NOTIFY_QUEUE (empty: notifications use the default queue)")
            queues = settings.NOTIFY_QUEUE
        super().setup_instance(queues=queues, **kwargs)

    def on_before_init(self, **kwargs: Any) -> None:
        super().on_before_init(**kwargs)
        # A fresh status from the first moment, so that a liveness probe never judges this
        # process by the file of the one it replaces.
        worker_watchdog.write_status(
            worker_watchdog.status_file(), {"pid": os.getpid(), "state": "starting", "updated_at": time.time()}
        )

    def on_consumer_ready(self, consumer: Any) -> None:
        super().on_consumer_ready(consumer)
        _start_watchdog(consumer)

    def stop(self, *args: Any, exitcode: int | None = None, **kwargs: Any) -> None:
        # Celery stops with EX_FAILURE only after an unrecoverable error (or an interrupt at
        # start-up); a SIGTERM's warm shutdown stops with 0 and may wait for long tasks.
        if exitcode == EX_FAILURE:
            threading.Thread(target=_exit_later, name="unrecoverable-exit", daemon=True).start()
        super().stop(*args, exitcode=exitcode, **kwargs)


_watching = threading.Event()


def _start_watchdog(consumer: Any) -> None:
    """Watch the queues this worker was started to consume (a cancelled consumer no longer
    lists its queue, and that is exactly the case to catch). Once per process."""
    if _watching.is_set():
        return
    _watching.set()
    watchdog = worker_watchdog.Watchdog(
        queues=tuple(queue.name for queue in consumer.task_consumer.queues),
        # Read at each check: a reconnection builds a new QoS object.
        prefetch_limit=lambda: int(consumer.qos.value) if consumer.qos is not None else 0,
        path=worker_watchdog.status_file(),
        leave=worker_watchdog.leave_stuck_worker,
    )
    signals.task_received.connect(lambda **_: watchdog.received(), weak=False)
    # Started after the pool has forked its processes: they need no copy of this thread.
    threading.Thread(target=watchdog.run, name="worker-watchdog", daemon=True).start()


def _exit_later() -> None:
    threading.Event().wait(UNRECOVERABLE_EXIT_SECONDS)
    logger.critical("still shutting down %.0f s after an unrecoverable error: exiting", UNRECOVERABLE_EXIT_SECONDS)
    logging.shutdown()
    os._exit(EX_FAILURE)
