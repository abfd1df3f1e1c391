"""A Celery worker killed mid-task does not lose the task (issue 8, point 2).

Real worker processes (prefork, as in production) on the configured Redis and this test
run's database. The task ends a session whose caller hung up longer ago than the policy's
grace (``sessions.end_hung_up_after_grace``): its effect is in the database, and running it
twice is harmless. To catch the worker *mid-task*, the test holds a lock on that session's
row (PostgreSQL: the row; SQLite: the database's write lock), so the task blocks on its
write; the broker shows the message delivered and not acknowledged; then the worker dies.

- The whole worker is SIGKILLed (parent and pool, as when a container is killed): the
  message stays unacknowledged (late acknowledgement), and a new worker gets it again once
  it is older than the visibility time-out and ends the session, exactly once.
- Only the pool process is SIGKILLed (OOM killer): the worker requeues the message at once
  (``task_reject_on_worker_lost``) and its new pool process ends the session.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from common.redis_client import shared_redis
from failover.choices import AuditAction
from failover.models import AuditEntry, Policy
from sessions.choices import EndReason, PhoneLeg, SessionState
from sessions.models import CollaborationSession
from sessions.tasks import end_hung_up_after_grace
from tests.desktop.conftest import logged_in, routed_session
from tests.factories import AgentFactory, ServerFactory
from tests.processes import ROOT, child_database_url, project_env
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# kombu's Redis transport keeps delivered, unacknowledged messages here until the ack.
UNACKED, UNACKED_INDEX = "unacked", "unacked_index"


@pytest.fixture
def hung_up_session() -> CollaborationSession:
    """An active session whose caller hung up ten minutes ago; the policy ends such
    sessions after a minute."""
    policy = Policy.current()
    policy.hung_up_grace_seconds = 60
    policy.save()
    agent = logged_in(AgentFactory(server=ServerFactory(name="routing-a")))
    return routed_session(agent, phone_leg=PhoneLeg.HUNG_UP, phone_hung_up_at=timezone.now() - timedelta(minutes=10))


@pytest.fixture
def workers(tmp_path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start real ``celery worker`` processes on a queue of this test's own (each in a
    process group of its own, so a test can kill one whole); stop them afterwards."""
    queue = f"test-reliability-{uuid.uuid4().hex[:8]}"
    started: list[subprocess.Popen[bytes]] = []
    log = tmp_path / "workers.log"

    def start(*, visibility_timeout: int) -> subprocess.Popen[bytes]:
        env = project_env(
            DATABASE_URL=child_database_url(),
            REDIS_URL=settings.REDIS_URL,
            CELERY_QUEUE=queue,  # what the task sends on commit goes to this queue too
            CELERY_VISIBILITY_TIMEOUT=str(visibility_timeout),
        )
        argv = ["-m", "celery", "-A", "collabadmin", "worker", "-Q", queue, "--pool", "prefork"]
        argv += ["--concurrency", "1", "--loglevel", "INFO", "--without-heartbeat", "--without-mingle"]
        argv += ["--without-gossip", "--hostname", f"{queue}-{len(started)}@%h"]
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [sys.executable, *argv], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        started.append(process)
        return process

    start.queue = queue  # type: ignore[attr-defined]
    start.log = log  # type: ignore[attr-defined]
    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        redis = shared_redis()
        redis.delete(queue)
        for tag in delivery_tags(queue=queue):
            redis.hdel(UNACKED, tag)
            redis.zrem(UNACKED_INDEX, tag)


def delivery_tags(*, task_id: str | None = None, queue: str | None = None) -> list[str]:
    """Delivery tags of the unacknowledged messages of ``task_id`` (or of any task sent to ``queue``)."""
    tags = []
    for tag, raw in shared_redis().hgetall(UNACKED).items():
        message, _exchange, routing_key = json.loads(raw)
        if (task_id and message["headers"].get("id") == task_id) or (queue and routing_key == queue):
            tags.append(tag.decode())
    return tags


def session_state(session: CollaborationSession) -> tuple[str, str | None]:
    session.refresh_from_db()
    return session.state, session.end_reason


def kill_group(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def pool_children(process: subprocess.Popen[bytes]) -> list[int]:
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    return [int(pid) for pid in children]


def logs(workers) -> Callable[[], str]:
    return lambda: workers.log.read_text()[-4000:] if workers.log.exists() else "(no worker log)"


def test_a_task_whose_whole_worker_is_killed_mid_task_completes_on_the_next_worker(workers, hung_up_session):
    session = hung_up_session
    with transaction.atomic():
        CollaborationSession.objects.select_for_update().get(pk=session.pk)  # the task will wait for this
        # Sent by hand with room to be delivered again: beat's own runs expire before the
        # next tick instead, which then does the same work.
        task_id = end_hung_up_after_grace.apply_async(queue=workers.queue, expires=300).id
        first = workers(visibility_timeout=2)
        wait_until(
            lambda: delivery_tags(task_id=task_id),
            timeout=60,
            message="the first worker took the task (delivered, not acknowledged)",
            diagnostics=logs(workers),
        )

        kill_group(first)  # SIGKILL, parent and pool process: nothing can acknowledge now

    assert first.returncode == -signal.SIGKILL
    assert delivery_tags(task_id=task_id), "the message was acknowledged before its task finished"
    assert session_state(session)[0] == SessionState.ACTIVE

    workers(visibility_timeout=2)

    wait_until(
        lambda: session_state(session) == (SessionState.ENDED, EndReason.HANGUP_TIMEOUT),
        timeout=60,
        message="the next worker ran the task again and ended the session",
        diagnostics=logs(workers),
    )
    wait_until(
        lambda: not delivery_tags(task_id=task_id),
        timeout=30,
        message="the message acknowledged once the task finished",
        diagnostics=logs(workers),
    )
    ended = AuditEntry.objects.filter(action=AuditAction.SESSION_ENDED, object_id=str(session.pk))
    assert ended.count() == 1  # ended exactly once


def test_a_task_whose_pool_process_is_killed_is_requeued_at_once(workers, hung_up_session):
    session = hung_up_session
    with transaction.atomic():
        CollaborationSession.objects.select_for_update().get(pk=session.pk)
        task_id = end_hung_up_after_grace.apply_async(queue=workers.queue, expires=300).id
        # A visibility time-out far beyond the test's waits: only the immediate requeue of a
        # lost pool process (task_reject_on_worker_lost) can bring the task back in time.
        worker = workers(visibility_timeout=900)
        wait_until(
            lambda: delivery_tags(task_id=task_id),
            timeout=60,
            message="the worker took the task",
            diagnostics=logs(workers),
        )
        (child,) = wait_until(lambda: pool_children(worker), timeout=10, message="the worker's pool process")

        os.kill(child, signal.SIGKILL)  # the pool process dies mid-task; the worker lives on
        wait_until(
            lambda: "WorkerLostError" in workers.log.read_text() or "exited with 'signal 9" in workers.log.read_text(),
            timeout=30,
            message="the worker noticed its pool process died",
            diagnostics=logs(workers),
        )

    wait_until(
        lambda: session_state(session) == (SessionState.ENDED, EndReason.HANGUP_TIMEOUT),
        timeout=60,
        message="the requeued task ran in the worker's new pool process and ended the session",
        diagnostics=logs(workers),
    )
    assert worker.poll() is None
    ended = AuditEntry.objects.filter(action=AuditAction.SESSION_ENDED, object_id=str(session.pk))
    assert ended.count() == 1


# --- The configuration that the tests above rely on, checked for every task ---------------------


def registered_tasks() -> dict:
    from collabadmin.celery import app

    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}


def test_every_periodic_entry_expires_before_its_next_tick():
    schedule = settings.CELERY_BEAT_SCHEDULE
    tasks = registered_tasks()

    assert schedule
    for name, entry in schedule.items():
        assert entry["task"] in tasks, f"{name}: no task {entry['task']}"
        expires = entry.get("options", {}).get("expires")
        assert expires is not None, f"{name} has no expiry: a busy worker would work through a backlog"
        assert 0 < expires <= entry["schedule"], f"{name} outlives its next tick"


def test_a_task_is_acknowledged_only_when_done_and_never_handed_out_twice_while_running():
    from collabadmin.celery import app

    longest = max(task.time_limit or settings.CELERY_TASK_TIME_LIMIT for task in registered_tasks().values())

    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    # A whole worker's unacknowledged messages are restored after the visibility time-out:
    # shorter than the longest task, a running task would be delivered to a second worker.
    assert app.conf.broker_transport_options["visibility_timeout"] > longest


def test_every_task_has_a_time_limit():
    # Its own, sized to its work: the 120 s default is only a backstop.
    missing = [name for name, task in registered_tasks().items() if not task.time_limit]

    assert missing == []


def test_retries_of_transient_errors_are_bounded_with_back_off():
    from common.task_retry import TRANSIENT_ERRORS

    retrying = {name: task for name, task in registered_tasks().items() if getattr(task, "autoretry_for", ())}

    assert {"sessions.drain_queue", "sessions.sync_agent", "sessions.release_route"} <= set(retrying)
    for name, task in retrying.items():
        assert set(task.autoretry_for) <= set(TRANSIENT_ERRORS), name
        assert task.max_retries is not None, name
        assert task.max_retries <= 5, name
        assert task.retry_backoff, name
        assert task.retry_backoff_max <= 60, name
