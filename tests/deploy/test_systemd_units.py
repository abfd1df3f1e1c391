"""The shipped systemd units, deploy/systemd/ (issue 21, point 5).

``systemd-analyze verify`` checks each one as systemd would load it: it must say nothing at
all (an unknown key or an unparseable value is only a warning to systemd, which then runs
the unit without it, so any output is a failure here). The units name /opt/collabadmin,
where the product is installed; the copies checked here point at this checkout and its
Python instead, since verify also checks that each command is executable. Then what the
installation guide promises of every unit: restart on failure, SIGTERM with a stop
time-out that lets the graceful stop finish, the environment file, its own user, and the
hardening.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from failover.monitor.runner import MONITOR_STOP_SECONDS
from tests.processes import ROOT

UNITS = ROOT / "deploy" / "systemd"
# Every unit in the folder: one added there is checked like the others.
NAMES = tuple(sorted(path.stem for path in UNITS.glob("*.service")))
INSTALLED = "/opt/collabadmin"


def unit_text(name: str) -> str:
    return (UNITS / f"{name}.service").read_text()


def directives(text: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit, continuation lines joined; a key may repeat."""
    found: dict[str, list[str]] = {}
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(re.sub(r"\s+", " ", value.strip()))
    return found


def seconds_option(command: str, option: str) -> int:
    match = re.search(rf"{option} (\d+)", command)
    assert match, f"{option} missing from {command}"
    return int(match.group(1))


def test_every_process_of_the_stack_has_its_unit():
    expected = {"collabadmin-node", "collabadmin-worker", "collabadmin-notifier", "collabadmin-beat"}
    assert expected <= set(NAMES)


def test_systemd_analyze_verify_finds_nothing_to_say(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing (Debian's systemd package): CI must check the units")
        pytest.skip("systemd-analyze is missing (apt-get install -y systemd)")
    python = Path(sys.executable)
    copies = []
    for name in NAMES:
        text = unit_text(name).replace(f"{INSTALLED}/.venv/bin/python", str(python)).replace(INSTALLED, str(ROOT))
        copy = tmp_path / f"{name}.service"
        copy.write_text(text)
        copies.append(str(copy))
    done = subprocess.run([tool, "verify", "--man=no", *copies], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_verify_is_not_silent_about_a_broken_unit(tmp_path):
    """The check above can fail: a misspelt key and a missing command are reported."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is missing")
    broken = tmp_path / "broken.service"
    broken.write_text("[Service]\nExecStart=/nonexistent/python -V\nTimeoutStopSecs=4\n")
    done = subprocess.run([tool, "verify", "--man=no", str(broken)], capture_output=True, text=True, timeout=60)
    assert "TimeoutStopSecs" in done.stderr
    assert done.returncode != 0


@pytest.mark.parametrize("name", NAMES)
def test_every_unit_restarts_on_failure_stops_with_sigterm_and_is_hardened(name):
    unit = directives(unit_text(name))
    expected = {
        "Restart": ["on-failure"],
        "KillSignal": ["SIGTERM"],
        "EnvironmentFile": ["/etc/collabadmin/collabadmin.env"],
        "User": ["collabadmin"],
        "WorkingDirectory": [INSTALLED],
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "ReadWritePaths": ["/var/lib/collabadmin"],
    }
    assert {key: unit.get(key) for key in expected} == expected
    assert unit["ExecStart"][0].startswith(f"{INSTALLED}/.venv/bin/python ")
    assert "TimeoutStopSec" in unit


def test_the_nodes_stop_time_out_covers_its_graceful_stop():
    """The lease handed on, then every request finished: systemd must not kill it sooner."""
    unit = directives(unit_text("collabadmin-node"))
    graceful = seconds_option(unit["ExecStart"][0], "--timeout-graceful-shutdown")
    assert int(unit["TimeoutStopSec"][0]) > MONITOR_STOP_SECONDS + graceful


def longest_task_seconds() -> int:
    """The largest time limit of any task the worker runs (Verify and Sync's, 600 s today)."""
    from collabadmin.celery import app

    app.loader.import_default_modules()
    return max(task.time_limit or 0 for task in app.tasks.values())


def test_the_worker_stops_warm_and_lets_the_longest_task_finish():
    unit = directives(unit_text("collabadmin-worker"))
    # Only the main process gets SIGTERM (a warm shutdown); the pool is killed only after the time-out.
    assert unit["KillMode"] == ["mixed"]
    assert int(unit["TimeoutStopSec"][0]) > longest_task_seconds() >= 600
    # It says when it is ready and pings the watchdog while it takes work (collabadmin/worker_watchdog.py).
    assert (unit["Type"], unit["NotifyAccess"]) == (["notify"], ["main"])
    assert "WatchdogSec" in unit


def test_the_notifier_serves_the_notification_queue_with_threads_and_its_own_status_file():
    from django.conf import settings

    from failover.tasks import notification_send

    unit = directives(unit_text("collabadmin-notifier"))
    command = unit["ExecStart"][0]
    assert "--notifier" in command
    assert "--pool threads" in command
    assert seconds_option(command, "--concurrency") == 20
    status_files = {
        name: [v for v in directives(unit_text(name)).get("Environment", []) if "WORKER_STATUS_FILE" in v]
        for name in ("collabadmin-worker", "collabadmin-notifier")
    }
    own = "COLLABADMIN_WORKER_STATUS_FILE=/run/collabadmin-notifier/worker.json"
    assert status_files["collabadmin-notifier"] == [own]
    assert status_files["collabadmin-notifier"] != status_files["collabadmin-worker"]
    assert unit["RuntimeDirectory"] == ["collabadmin-notifier"]
    # A warm stop lets the delivery in hand end: its attempt's time-out, and even its task's time limit.
    assert unit["KillMode"] == ["mixed"]
    assert int(unit["TimeoutStopSec"][0]) > notification_send.time_limit > settings.NOTIFY_HTTP_TIMEOUT_SECONDS
    assert (unit["Type"], unit["NotifyAccess"]) == (["notify"], ["main"])
    assert "WatchdogSec" in unit
