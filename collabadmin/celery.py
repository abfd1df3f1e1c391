"""The Celery app, exported from the project package (``celery -A collabadmin worker``)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "collabadmin.settings")

app = Celery("collabadmin")
# All Celery options live in Django settings under the CELERY_ prefix.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="collabadmin.ping", time_limit=10, soft_time_limit=8, expires=60)
def ping(token: str) -> dict[str, object]:
    """Answer with the token and this worker's pid: proves a worker is consuming the queue."""
    return {"token": token, "pid": os.getpid()}
