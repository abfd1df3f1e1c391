"""Sending follow-up work to Celery by task name: the one way a service asks for a task.

Services sit below the Celery tasks (a task imports the services it runs), so a service
never imports a tasks module; it names the task here instead. Sending never raises: a
broker that cannot be reached is logged, the change stays committed, and the periodic
tasks (the drain safety net, the sweeps) catch up.

The task object is looked up in the app's registry rather than sent with ``send_task``, so
``task_always_eager`` (tests that run follow-ups in the test) still applies.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Task, current_app
from django.db import transaction

log = logging.getLogger(__name__)
# One thread imports the task modules at a time; the others wait for the whole of it
# rather than find a module half imported (web nodes import them at start: asgi.py).
_discovery = threading.Lock()


def task_named(name: str) -> Task:
    """The registered task ``name``; autodiscovers the apps' tasks first if need be (a web
    process has not imported them yet, the worker has)."""
    if name not in current_app.tasks:
        with _discovery:
            if name not in current_app.tasks:
                current_app.loader.import_default_modules()
    return current_app.tasks[name]


def send_now(name: str, *args: Any, **options: Any) -> bool:
    """Send the task ``name`` with ``args`` now; ``False`` (and a warning) if it could not be
    sent. ``options`` go to ``apply_async`` (``kwargs``, ``countdown``...)."""
    try:
        task_named(name).apply_async(args=args, **options)
    except Exception:
        log.warning("could not send %s%r", name, args, exc_info=True)
        return False
    return True


def send_on_commit(name: str, *args: Any, **options: Any) -> None:
    """Send the task ``name`` once the current transaction commits (never for a rolled-back
    change)."""
    transaction.on_commit(lambda: send_now(name, *args, **options))
