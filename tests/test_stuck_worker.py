"""A Celery worker that stays alive but stops taking work is replaced (issue 16, point 3).

Real worker processes on the configured Redis and this test run's database, each on a
queue of the test's own. The worker is made to stop consuming the way it happens for real
while it stays connected: its consumer is cancelled through Celery's remote control
(``cancel_consumer``), as kombu's transport effectively does after quick Redis restarts
(celery/celery#8030). The work is beat's own periodic task that ends a session whose
caller hung up long ago: its effect is in the database.

- Under the demo's process runner (``python -m collabadmin.stack``, what ``bin/run``
  starts), the stuck worker leaves by itself, the runner starts a fresh one, and the queue
  drains again within 60 s.
- Without a supervisor: ``manage.py worker_liveness`` fails, the worker exits with a
  failure code, ``/readyz`` warns that work waits and ``/metrics`` shows its age; a worker
  whose process hangs (SIGSTOP) fails the probe too.
- A worker whose every slot is busy with a long task while work waits is busy, not stuck:
  it is not replaced.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from collabadmin.celery import app, ping
from collabadmin.task_queue import STALLED_AFTER_SECONDS, queue_state
from common.redis_client import shared_redis
from failover.models import Policy
from sessions.choices import EndReason, PhoneLeg, SessionState
from sessions.models import CollaborationSession
from sessions.tasks import end_hung_up_after_grace
from tests.desktop.conftest import logged_in, routed_session
from tests.factories import AgentFactory, ServerFactory
from tests.processes import ROOT, child_database_url, free_port, project_env
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DRAINS_AGAIN_WITHIN_S = 60  # the bound, from the moment the worker stops consuming


@pytest.fixture
def queue(settings) -> Iterator[str]:
    """A Celery queue of this test's own; this process's /readyz and /metrics watch it."""
    name = f"test-stuck-{uuid.uuid4().hex[:8]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = name
    yield name
    shared_redis().delete(name)


def hung_up_session(server_name: str) -> CollaborationSession:
    """An active session whose caller hung up ten minutes ago; the policy ends such sessions
    after a minute (beat's ``end_hung_up_after_grace``, every 5 s, on a worker)."""
    policy = Policy.current()
    policy.hung_up_grace_seconds = 60
    policy.save()
    agent = logged_in(AgentFactory(server=ServerFactory(name=server_name)))
    return routed_session(agent, phone_leg=PhoneLeg.HUNG_UP, phone_hung_up_at=timezone.now() - timedelta(minutes=10))


def ended(session: CollaborationSession) -> bool:
    session.refresh_from_db()
    return session.state == SessionState.ENDED and session.end_reason == EndReason.HANGUP_TIMEOUT


def cancel_consumer(queue: str) -> None:
    """Celery's remote control: the worker stops consuming ``queue`` and stays alive."""
    replies = app.control.cancel_consumer(queue, reply=True, timeout=5)
    assert any(f"no longer consuming from {queue}" in str(reply) for reply in replies), replies


def status_of(path: Path) -> dict:
    from collabadmin.worker_watchdog import read_status

    return read_status(path) or {}


# --- Under the demo's process runner ----------------------------------------------------------


class RunningStack:
    """``python -m collabadmin.stack`` as a child, its output collected line by line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "collabadmin.stack", "--port", str(free_port()), "--no-simulators"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=lambda: self.lines.extend(iter(self.process.stdout.readline, "")), daemon=True).start()

    def pids(self, name: str) -> list[int]:
        """Every pid the runner started ``name`` with, in order."""
        pattern = re.compile(rf"\s*{re.escape(name)} \| started \(pid (\d+)\)")
        return [int(match.group(1)) for line in list(self.lines) if (match := pattern.match(line))]

    def output(self) -> str:
        return "".join(self.lines[-60:])

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def test_the_demo_runner_replaces_a_worker_that_stopped_taking_work_and_the_queue_drains_within_60_s(queue, tmp_path):
    stack = RunningStack(
        project_env(
            DATABASE_URL=child_database_url(),
            REDIS_URL=settings.REDIS_URL,
            CELERY_QUEUE=queue,  # beat sends its periodic work here, the worker reads it
            COLLABADMIN_VAR_DIR=str(tmp_path),  # the worker's status file and beat's schedule
        )
    )
    try:
        first = hung_up_session("routing-a")
        wait_until(
            lambda: ended(first),
            timeout=90,
            message="the stack's worker took beat's work (the first hung-up session ended)",
            diagnostics=stack.output,
        )

        cancel_consumer(queue)  # alive, connected, consuming nothing
        stopped_at = time.monotonic()
        second = hung_up_session("routing-b")

        wait_until(
            lambda: ended(second),
            timeout=DRAINS_AGAIN_WITHIN_S,
            message="the queue drained again: the second hung-up session ended",
            diagnostics=stack.output,
        )
        drained_after = time.monotonic() - stopped_at
        replaced_by = stack.pids("worker")[1:]
        print(f"stuck worker: queue drained again {drained_after:.1f} s after its consumer stopped")
    finally:
        stack.stop()

    assert replaced_by, f"the worker was not replaced:\n{stack.output()}"
    assert "worker | exited with code 1; starting it again" in stack.output()
    assert "this worker takes no work" in stack.output()


def test_the_demo_runner_replaces_a_worker_whose_process_hangs(queue, tmp_path):
    stack = RunningStack(
        project_env(
            DATABASE_URL=child_database_url(),
            REDIS_URL=settings.REDIS_URL,
            CELERY_QUEUE=queue,
            COLLABADMIN_VAR_DIR=str(tmp_path),
        )
    )
    try:
        first = hung_up_session("routing-a")
        wait_until(lambda: ended(first), timeout=90, message="the stack's worker took work", diagnostics=stack.output)
        (worker,) = stack.pids("worker")

        os.kill(worker, signal.SIGSTOP)  # hangs: no thread of it runs, its status file goes stale
        second = hung_up_session("routing-b")
        wait_until(
            lambda: ended(second),
            timeout=DRAINS_AGAIN_WITHIN_S,
            message="the hung worker was replaced and the queue drained again",
            diagnostics=stack.output,
        )
    finally:
        stack.stop()

    assert len(stack.pids("worker")) >= 2, stack.output()
    assert "the worker process is hung); killing it to start a fresh one" in stack.output()


# --- Without a supervisor: the probe, the exit, /readyz and /metrics ---------------------------


@pytest.fixture
def worker(tmp_path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start a real ``celery worker`` on the test's queue, with its own status file, as
    systemd would (``NOTIFY_SOCKET``: the test hears what the worker tells systemd)."""
    started: list[subprocess.Popen[bytes]] = []
    log = tmp_path / "worker.log"
    systemd = NotifySocket(tmp_path / "notify.sock")

    def start(queue: str, *, concurrency: int = 1) -> subprocess.Popen[bytes]:
        env = project_env(
            DATABASE_URL=child_database_url(),
            REDIS_URL=settings.REDIS_URL,
            CELERY_QUEUE=queue,
            COLLABADMIN_WORKER_STATUS_FILE=str(tmp_path / "worker.json"),
            NOTIFY_SOCKET=str(systemd.path),
        )
        argv = ["-m", "celery", "-A", "collabadmin", "worker", "-Q", queue, "--pool", "prefork"]
        argv += ["--concurrency", str(concurrency), "--loglevel", "INFO", "--without-heartbeat"]
        argv += ["--without-mingle", "--without-gossip", "--hostname", f"{queue}@%h"]
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [sys.executable, *argv], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        started.append(process)
        wait_until(
            lambda: (
                status_of(tmp_path / "worker.json").get("state") == "running"
                and status_of(tmp_path / "worker.json").get("pid") == process.pid
            ),
            timeout=60,
            message="the worker is ready and watching its queue",
            diagnostics=lambda: log.read_text()[-3000:],
        )
        return process

    start.log = log  # type: ignore[attr-defined]
    start.status_file = tmp_path / "worker.json"  # type: ignore[attr-defined]
    start.systemd = systemd  # type: ignore[attr-defined]
    try:
        yield start
    finally:
        systemd.close()
        for process in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGCONT)
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


class NotifySocket:
    """A datagram socket where the worker sends what it tells systemd (``sd_notify``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[str] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        threading.Thread(target=self._listen, name="notify-socket", daemon=True).start()

    def _listen(self) -> None:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


def liveness(status_file: Path) -> subprocess.CompletedProcess[str]:
    """The documented probe, as a supervisor runs it."""
    return subprocess.run(
        [sys.executable, "manage.py", "worker_liveness", "--status-file", str(status_file)],
        cwd=ROOT,
        env=project_env(REDIS_URL=settings.REDIS_URL),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_stuck_worker_fails_its_liveness_probe_leaves_with_a_failure_code_and_readyz_warns(
    queue, worker, anonymous_client, admin_client
):
    process = worker(queue)
    assert liveness(worker.status_file).returncode == 0
    wait_until(
        lambda: {"READY=1", "WATCHDOG=1"} <= set(worker.systemd.messages),
        timeout=10,
        message="the worker told systemd it is ready and pinged its watchdog",
    )

    cancel_consumer(queue)
    for n in range(3):
        ping.apply_async(args=[f"waiting-{n}"], queue=queue)

    probe = wait_until(
        lambda: (result := liveness(worker.status_file)).returncode != 0 and result,
        timeout=30,
        message="the liveness probe failed once work had waited with nobody taking it",
        diagnostics=lambda: worker.log.read_text()[-3000:],
    )
    assert "stuck: work has waited" in probe.stderr
    ready = anonymous_client.get("/readyz").json()
    assert ready["status"] == "ok"  # the node still serves: only the worker is at fault
    assert ready["tasks"]["stalled"] is True
    assert ready["tasks"]["waiting"] >= 3
    assert "no Celery worker is taking it" in ready["warnings"][0]
    metrics = admin_client.get("/metrics").content.decode()
    age = re.search(rf'collabadmin_task_queue_oldest_wait_seconds{{queue="{queue}"}} (\S+)', metrics)
    assert age, metrics[-2000:]
    assert float(age.group(1)) >= STALLED_AFTER_SECONDS

    assert process.wait(timeout=30) == 1  # Celery's failure code: its supervisor starts another
    told = worker.systemd.messages
    stuck = next(n for n, message in enumerate(told) if message.startswith("STATUS=stuck: work has waited"))
    assert "WATCHDOG=1" not in told[stuck + 1 :], "systemd's watchdog was pinged after the worker found itself stuck"


def test_a_worker_whose_process_hangs_fails_its_liveness_probe(queue, worker):
    process = worker(queue)

    os.killpg(process.pid, signal.SIGSTOP)
    probe = wait_until(
        lambda: (result := liveness(worker.status_file)).returncode != 0 and result,
        timeout=30,
        message="the liveness probe failed while the worker's process was stopped",
    )
    assert "the worker process is hung" in probe.stderr

    os.killpg(process.pid, signal.SIGCONT)
    wait_until(
        lambda: liveness(worker.status_file).returncode == 0,
        timeout=30,
        message="the probe passes again once the process runs",
    )


def test_a_worker_busy_with_a_long_task_while_work_waits_is_not_replaced(queue, worker):
    session = hung_up_session("routing-a")
    process = worker(queue, concurrency=1)
    with transaction.atomic():
        CollaborationSession.objects.select_for_update().get(pk=session.pk)  # the task waits for this
        end_hung_up_after_grace.apply_async(queue=queue, expires=300)
        wait_until(
            lambda: status_of(worker.status_file).get("reserved") == 1,
            timeout=30,
            message="the worker's one slot took the task",
            diagnostics=lambda: worker.log.read_text()[-3000:],
        )
        for n in range(3):
            ping.apply_async(args=[f"behind-{n}"], queue=queue)
        # The worker itself saw the work wait long enough to look stalled, and judged it.
        seen = wait_until(
            lambda: (status := status_of(worker.status_file))["queues"][0]["stalled"] and status,
            timeout=30,
            message="the worker saw work waiting behind its long task for as long as a stuck one would",
            diagnostics=lambda: worker.log.read_text()[-3000:],
        )

    assert seen["state"] == "running", seen
    assert seen["reserved"] == seen["limit"] == 1, seen
    assert liveness(worker.status_file).returncode == 0
    wait_until(lambda: ended(session), timeout=30, message="the long task finished once the lock was released")
    wait_until(
        lambda: queue_state(shared_redis(), queue).waiting == 0,
        timeout=30,
        message="the work behind it was taken",
    )
    assert process.poll() is None
