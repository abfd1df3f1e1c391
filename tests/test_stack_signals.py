"""Stopping ``bin/run`` (issue 15, point 12): SIGINT and SIGTERM to its process group, when
it was started in the background, both stop the stack and every child.

A shell starts a background job with SIGINT ignored, and Python keeps an ignored SIGINT
ignored: ``kill -INT -<pgid>`` reached the stack (its children each run in a session of
their own) and did nothing. The runner is the real one (``python -m collabadmin.stack``,
what ``bin/run`` ends with), started by a real ``sh`` as ``… &``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.processes import child_database_url, free_port, project_env
from tests.test_issue2_audit import ROOT, STACK_WITHOUT_SIMULATORS, _alive, _http_status, _started_pids
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_background_jobs_group_stops_every_child(tmp_path, signum):
    from django.conf import settings

    port = free_port()
    log, pid_file = tmp_path / "stack.log", tmp_path / "stack.pid"
    env = project_env(DATABASE_URL=child_database_url(), REDIS_URL=settings.REDIS_URL)
    runner = f'"{sys.executable}" -m collabadmin.stack --port {port} --no-simulators'
    # As `bin/run > log &` from a script: a background job of a shell without job control.
    shell = subprocess.Popen(
        ["sh", "-c", f'{runner} > "{log}" 2>&1 & echo $! > "{pid_file}"; wait'],
        cwd=ROOT,
        env=env,
        start_new_session=True,  # the group the signal goes to: the shell and its job
    )
    group = shell.pid
    try:
        wait_until(
            lambda: (
                _http_status(f"http://127.0.0.1:{port}/healthz") == 200
                and set(_started_pids(log)) == STACK_WITHOUT_SIMULATORS
            ),
            timeout=60,
            message="the stack's web node answers /healthz",
            diagnostics=log.read_text,
        )
        stack_pid = int(pid_file.read_text())
        children = _started_pids(log)

        os.killpg(group, signum)

        wait_until(
            lambda: not _alive(stack_pid) and not any(_alive(pid) for pid in children.values()),
            timeout=30,
            message=f"the stack and its children {children} gone after {signum.name}",
            diagnostics=log.read_text,
        )
    finally:
        stack = [int(pid_file.read_text())] if pid_file.exists() else []
        for pid in [shell.pid, *stack, *_started_pids(log).values()]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        shell.wait(timeout=10)
    assert "stopping" in log.read_text()


def test_stopping_the_stack_stops_the_embedded_redis_it_ran_on(tmp_path):
    """``bin/run``'s promise, "Ctrl-C stops them all", includes the embedded Redis: a
    daemon shared by every process under ``var/``, which outlived the stack before."""
    from collabadmin import embedded_redis

    port, var = free_port(), tmp_path / "var"
    log = tmp_path / "stack.log"
    env = project_env(
        DATABASE_URL=child_database_url(), REDIS_URL=None, REDIS_SENTINELS=None, COLLABADMIN_VAR_DIR=str(var)
    )
    with log.open("wb") as out:
        runner = subprocess.Popen(
            [sys.executable, "-m", "collabadmin.stack", "--port", str(port), "--no-simulators"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: _http_status(f"http://127.0.0.1:{port}/healthz") == 200,
            timeout=60,
            message="the stack's web node answers /healthz",
            diagnostics=log.read_text,
        )
        redis_pid = int((var / "redis.pid").read_text())
        assert embedded_redis.answers(embedded_redis.socket_path(var))

        runner.send_signal(signal.SIGINT)
        assert runner.wait(timeout=60) == 0
        redis_left_running = _alive(redis_pid)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
        embedded_redis.stop(var)  # whatever happened above, no daemon left behind
    assert not redis_left_running, log.read_text()[-2000:]
    assert "stopped the embedded Redis" in log.read_text()
