"""A web node knows every task before its first request.

Regression: services send follow-ups by task name (common/outbox.py). A restarted node
looked the task modules up lazily, on the first request that needed one; with several
request threads doing it at once, one lost a follow-up to ``NotRegistered``
(``sessions.release_route``, seen in the rolling-upgrade test), and nothing sends it again.
"""

from __future__ import annotations

from tests.processes import run_python

PROJECT_TASKS = (
    "sessions.release_route",
    "sessions.drain_queue",
    "sessions.drain_deadlines",
    "failover.notification_send",
)


def test_loading_the_asgi_application_registers_every_project_task():
    result = run_python(
        "import collabadmin.asgi\n"
        "from celery import current_app\n"
        "print(' '.join(sorted(name for name in current_app.tasks if not name.startswith('celery.'))))\n"
    )
    assert result.returncode == 0, result.stderr
    registered = set(result.stdout.split())
    assert set(PROJECT_TASKS) <= registered, registered
