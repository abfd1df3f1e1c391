"""Structured logs (issue 15, point 9), from real output.

* The stack (``python -m collabadmin.stack``, what ``bin/run`` runs): every line the web
  node, the Celery worker and beat write is one JSON object (Celery replaced the root
  handler with plain text, uvicorn logged its own lines as text), and an HTTP request's
  lines carry its request id.
* A real failover (simulator processes, the monitor): the health change, the switchover
  with its figures, a server failure and its alert are each one JSON line.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import urllib.request

import pytest
from django.utils import timezone

from failover.choices import Health
from failover.monitor.runner import monitor_in_thread
from failover.services.servers import server_health_changed
from tests.failover.test_monitor_with_simulators import (  # noqa: F401  (fixtures)
    both_up_and_one_connected,
    connected_name,
    fast_policy,
    simulated_pair,
)
from tests.peering.conftest import start_peer  # noqa: F401  (fixture)
from tests.processes import child_database_url, free_port, project_env
from tests.test_issue2_audit import ROOT, _http_status, _started_pids
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PROCESSES = ("web", "worker", "notifier", "beat")


def _lines_of(log_text: str) -> dict[str, list[str]]:
    """Each process's own output lines (the stack prefixes them with ``<name> | ``)."""
    lines: dict[str, list[str]] = {name: [] for name in PROCESSES}
    for line in log_text.splitlines():
        name, sep, text = line.partition(" | ")
        # The runner's own lines about a child (started, stopping, killed after the grace
        # time on a loaded machine, exited) carry its prefix too: they are not the child's.
        runner_says = ("started (pid", "stopping", "did not stop in time", "exited with code")
        if sep and name.strip() in lines and not text.startswith(runner_says):
            lines[name.strip()].append(text)
    return lines


def _started(log_text: str) -> bool:
    lines = _lines_of(log_text)
    workers_ready = all(any(" ready." in line for line in lines[name]) for name in ("worker", "notifier"))
    return workers_ready and any("Starting" in line for line in lines["beat"])


def _json(line: str) -> dict | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def test_the_stack_logs_json_only_with_request_ids(tmp_path):
    from django.conf import settings

    port = free_port()
    log = tmp_path / "stack.log"
    env = project_env(
        DATABASE_URL=child_database_url(), REDIS_URL=settings.REDIS_URL, COLLABADMIN_CELERY_LOGLEVEL="INFO"
    )
    with open(log, "wb") as out:
        stack = subprocess.Popen(
            [sys.executable, "-m", "collabadmin.stack", "--port", str(port), "--no-simulators"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: (
                _http_status(f"http://127.0.0.1:{port}/healthz") == 200 and len(_started_pids(log)) == len(PROCESSES)
            ),
            timeout=60,
            message="the stack is up",
            diagnostics=log.read_text,
        )
        request = urllib.request.Request(f"http://127.0.0.1:{port}/no-such-page/", headers={"X-Request-ID": "req-42"})
        assert _http_status_of(request) == (404, "req-42")
        # The workers are ready and beat has started (Celery at INFO) before they are stopped:
        # everything they print while starting is in the log.
        wait_until(
            lambda: _started(log.read_text()),
            timeout=60,
            message="the workers ready and beat started",
            diagnostics=log.read_text,
        )
    finally:
        stack.send_signal(signal.SIGTERM)
        try:
            stack.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)
            raise

    lines = _lines_of(log.read_text())
    for name in PROCESSES:
        not_json = [line for line in lines[name] if _json(line) is None]
        assert not_json == [], f"{name}: {not_json}"
    web = [_json(line) for line in lines["web"]]
    assert any(entry["logger"].startswith("uvicorn") for entry in web), web
    missing = [e for e in web if e["logger"] == "django.request" and "no-such-page" in e["message"]]
    assert [e.get("request_id") for e in missing] == ["req-42"], web


def _http_status_of(request: urllib.request.Request) -> tuple[int, str | None]:
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (our own node)
            return response.status, response.headers.get("X-Request-ID")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("X-Request-ID")


@pytest.fixture
def json_log():
    """What the project's own JSON handler (settings.LOGGING, on the root logger) writes,
    redirected from stderr into a buffer for the test."""
    from collabadmin.logging import JsonFormatter

    (handler,) = [h for h in logging.getLogger().handlers if isinstance(h.formatter, JsonFormatter)]
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


def _event_lines(text: str) -> list[dict]:
    entries = [_json(line) for line in text.splitlines()]
    return [e for e in entries if e is not None and e.get("logger") == "failover.events"]


def test_a_real_failover_is_in_the_log_with_its_figures(simulated_pair, json_log):  # noqa: F811
    link, processes = simulated_pair
    with monitor_in_thread():
        active, standby = both_up_and_one_connected(link)
        json_log.seek(0)
        json_log.truncate()

        processes[active].kill()

        wait_until(lambda: connected_name(link) == standby, timeout=10, message="switch to the standby")
    events = _event_lines(json_log.getvalue())

    # The standby's own "up" line may land just after the log was emptied (it is written
    # on commit): what matters is the one "down" line of the killed peer.
    (down,) = [e for e in events if e["event"] == "peer_health_changed" and e["health"] == "down"]
    assert down["peer"] == active
    assert down["level"] == "WARNING"
    (switch,) = [e for e in events if e["event"] == "switchover"]
    assert (switch["from_peer"], switch["to_peer"], switch["kind"]) == (active, standby, "automatic")
    assert switch["epoch"] == link.__class__.objects.get(pk=link.pk).epoch
    assert switch["detected_at_once"] is True
    assert switch["detection"] in ("connection_closed", "connection_reset")
    assert "detection_ms" not in switch  # not measured: no figure
    assert switch["switchover_ms"] >= 0
    assert f"{active} -> {standby}" in switch["message"]


def test_a_server_failure_and_its_alert_are_in_the_log(server, json_log):
    type(server).objects.filter(pk=server.pk).update(health=Health.UP)
    now = timezone.now()

    server_health_changed(
        server_id=server.pk,
        health=Health.DOWN,
        at=now,
        failed_at=now,
        error="connection refused",
        detection="connection_refused",
    )

    events = _event_lines(json_log.getvalue())
    (failed,) = [e for e in events if e["event"] == "server_failed"]
    assert (failed["level"], failed["server"], failed["detection"]) == ("ERROR", server.name, "connection_refused")
    assert failed["detected_at_once"] is True
    (alert,) = [e for e in events if e["event"] == "alert_raised"]
    assert (alert["alert"], alert["severity"], alert["server"]) == ("server_failed", "critical", server.name)
