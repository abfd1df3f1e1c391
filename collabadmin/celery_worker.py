"""The ``celery worker`` process: Celery's own, but it leaves promptly after an
unrecoverable error, so that its supervisor starts a fresh one.

Seen in our fault-injection suite (seed 462225): Redis restarted twice within seconds, and
kombu's Redis transport raised ``AttributeError: 'NoneType' object has no attribute
'hostname'`` while closing the lost connection (a kombu bug as old as kombu 3). Celery logs
"Unrecoverable error" and begins a warm shutdown, which then hung: the process stayed
alive, consumed nothing, and the queue stopped draining though agents were free. A
supervisor restarts a process that exits, not one that hangs. So after such an error the
warm shutdown gets ``UNRECOVERABLE_EXIT_SECONDS`` to finish the tasks in hand, then the
process exits with Celery's failure code. Nothing is lost: messages are acknowledged late,
and every task is safe to run twice.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery.apps.worker import Worker as CeleryWorker
from celery.platforms import EX_FAILURE

logger = logging.getLogger(__name__)

UNRECOVERABLE_EXIT_SECONDS = 10.0


class Worker(CeleryWorker):
    def stop(self, *args: Any, exitcode: int | None = None, **kwargs: Any) -> None:
        # Celery stops with EX_FAILURE only after an unrecoverable error (or an interrupt at
        # start-up); a SIGTERM's warm shutdown stops with 0 and may wait for long tasks.
        if exitcode == EX_FAILURE:
            threading.Thread(target=_exit_later, name="unrecoverable-exit", daemon=True).start()
        super().stop(*args, exitcode=exitcode, **kwargs)


def _exit_later() -> None:
    threading.Event().wait(UNRECOVERABLE_EXIT_SECONDS)
    logger.critical("still shutting down %.0f s after an unrecoverable error: exiting", UNRECOVERABLE_EXIT_SECONDS)
    logging.shutdown()
    os._exit(EX_FAILURE)
