"""The Celery app, exported from the project package (``celery -A collabadmin worker``).

Reliability (docs/architecture.md, "Celery: what survives a dead worker"): messages are
acknowledged late (``CELERY_TASK_ACKS_LATE``), so a task whose worker dies is delivered
again, and every task is written to be safe to run twice. Periodic entries expire before
their next tick, and beat runs exactly once (a second beat only doubles harmless ticks).
"""

from __future__ import annotations

import os

from celery import Celery, signals
from kombu.utils.objects import cached_property

from collabadmin import kombu_transport
from collabadmin.task_queue import stamp_sent_at

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "collabadmin.settings")


class CollabCelery(Celery):
    @cached_property
    def Worker(self):  # noqa: N802 (Celery's name)
        """``celery worker`` runs our Worker: it exits after an unrecoverable error instead of
        hanging (collabadmin/celery_worker.py)."""
        return self.subclass_with_self("collabadmin.celery_worker:Worker")


# Before anything connects: kombu's Redis transports, with a bug made harmless.
kombu_transport.register()
app = CollabCelery("collabadmin")
# All Celery options live in Django settings under the CELERY_ prefix.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Every message says when it was sent: the age of the next one waiting is how long its queue
# has gone without a taker (collabadmin/task_queue.py).
signals.before_task_publish.connect(stamp_sent_at, weak=False)


@app.task(name="collabadmin.ping", time_limit=10, soft_time_limit=8, expires=60)
def ping(token: str) -> dict[str, object]:
    """Answer with the token and this worker's pid: proves a worker is consuming the queue."""
    return {"token": token, "pid": os.getpid()}
