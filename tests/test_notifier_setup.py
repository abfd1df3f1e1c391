"""The notifier is the default (issue 19, point 3): the notification tasks' queue is derived
from ``CELERY_QUEUE``, the stack starts a worker of threads for it with a status file of its
own, and ``NOTIFY_QUEUE=`` (empty) puts the notifications back on the ordinary worker."""

from __future__ import annotations

import json

import pytest

from tests.processes import child_database_url, redis_env, run_python

# A child process on this run's database (the stack lists the configured servers' nodes)
# and Redis (so that it starts no embedded one of its own).
pytestmark = pytest.mark.django_db(transaction=True)

SETUP = """
import json
from django.conf import settings
from collabadmin.stack import stack_processes
specs = {s.name: s for s in stack_processes(host="127.0.0.1", port=8000, simulators=False)}
print(json.dumps({
    "queue": settings.NOTIFY_QUEUE,
    "routes": settings.CELERY_TASK_ROUTES,
    "specs": {name: {"argv": s.argv, "status_file": s.status_file, "supervised": s.supervised}
              for name, s in specs.items() if name != "web"},
}))
"""


def setup_with(**env: str) -> dict:
    done = run_python(SETUP, DATABASE_URL=child_database_url(), **redis_env(), **env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_notification_queue_follows_celery_queue_and_the_stack_runs_a_notifier(settings):
    found = setup_with(CELERY_QUEUE="deployment-7", NOTIFY_QUEUE=None)
    assert found["queue"] == "deployment-7.notifications"
    assert found["routes"] == {"failover.notification_send": {"queue": "deployment-7.notifications"}}
    assert set(found["specs"]) == {"worker", "notifier", "beat"}
    notifier, worker = found["specs"]["notifier"], found["specs"]["worker"]
    assert notifier["supervised"]
    assert "--notifier" in notifier["argv"]
    assert notifier["argv"][notifier["argv"].index("--pool") + 1] == "threads"
    assert notifier["argv"][notifier["argv"].index("--concurrency") + 1] == "20"
    # Each worker's watchdog writes its own file: one shared would judge one by the other.
    assert notifier["status_file"] != worker["status_file"]
    assert notifier["status_file"] == str(settings.VAR_DIR / "celery-notifier.json")


def test_an_empty_notify_queue_puts_notifications_on_the_ordinary_worker():
    found = setup_with(NOTIFY_QUEUE="")
    assert (found["queue"], found["routes"]) == ("", {})
    assert set(found["specs"]) == {"worker", "beat"}


def test_a_notifier_without_a_notification_queue_refuses_to_start():
    done = run_python(
        "from collabadmin.celery import app\napp.worker_main(['worker', '--notifier', '--pool', 'solo'])",
        NOTIFY_QUEUE="",
        **redis_env(),
    )
    assert done.returncode != 0
    assert "--notifier needs NOTIFY_QUEUE" in done.stderr
