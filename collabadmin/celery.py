"""The Celery app, exported from the project package (``celery -A collabadmin worker``).

Reliability (docs/architecture.md, "Celery: what survives a dead worker"): messages are
acknowledged late (``CELERY_TASK_ACKS_LATE``), so a task whose worker dies is delivered
again, and every task is written to be safe to run twice. Periodic entries expire before
their next tick, and beat runs exactly once (a second beat only doubles harmless ticks).
"""

from __future__ import annotations

import logging.config
import os

import click
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
# `celery -A collabadmin worker --notifier`: consume the notification tasks' queue alone,
# named as every sender names it (settings.NOTIFY_QUEUE), so a unit file never repeats it.
app.user_options["worker"].add(
    click.Option(["--notifier"], is_flag=True, default=False, help="Consume the notification queue alone.")
)


@signals.setup_logging.connect(weak=False)
def use_the_project_logging(loglevel: int | str | None = None, **kwargs: object) -> None:
    """The worker's and beat's log lines are JSON like every other process's.

    Celery replaces the root logger's handlers with its own plain-text ones unless a
    receiver of this signal configures logging instead (``worker_hijack_root_logger`` is
    off too). ``--loglevel`` still sets the level of Celery's own loggers. Warnings go
    to the log as well (the worker warns about running as root before it sets up logging:
    ``celeryd_init`` below comes first).
    """
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    logging.captureWarnings(True)
    if loglevel:
        logging.getLogger("celery").setLevel(loglevel)


@signals.celeryd_init.connect(weak=False)
def _log_the_workers_start_as_json(**kwargs: object) -> None:
    use_the_project_logging()


# Every message says when it was sent: the age of the next one waiting is how long its queue
# has gone without a taker (collabadmin/task_queue.py).
signals.before_task_publish.connect(stamp_sent_at, weak=False)


@app.task(name="collabadmin.ping", time_limit=10, soft_time_limit=8, expires=60)
def ping(token: str) -> dict[str, object]:
    """Answer with the token and this worker's pid: proves a worker is consuming the queue."""
    return {"token": token, "pid": os.getpid()}
