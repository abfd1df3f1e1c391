"""`manage.py check --deploy` is clean under production settings, and the transport
settings follow DEBUG (strict in production, plain http for the local demo)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys

import pytest
from django.test import Client

from collabadmin import embedded_redis
from tests.processes import ROOT, project_env, run_python

# Settings load without touching Redis when REDIS_URL is set: an unused address.
UNUSED_REDIS = "redis://127.0.0.1:6399/0"


@pytest.fixture
def var_dir(tmp_path):
    yield tmp_path
    embedded_redis.stop(tmp_path)


def production_env(var_dir, **overrides: str | None) -> dict[str, str]:
    return project_env(
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="collab.example.com",
        CSRF_TRUSTED_ORIGINS="https://collab.example.com",
        REDIS_URL=UNUSED_REDIS,
        DATABASE_URL=None,
        COLLABADMIN_VAR_DIR=str(var_dir),
        **overrides,
    )


def test_check_deploy_reports_no_issue_under_production_settings(var_dir):
    # The same command as .ci/run's "django checks" step.
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(var_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNINGS" not in result.stdout + result.stderr


def test_check_deploy_names_what_an_operator_switched_off(var_dir):
    # The variables really drive the settings: turning HSTS and secure cookies off is reported.
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(var_dir, SECURE_HSTS_SECONDS="0", SESSION_COOKIE_SECURE="0", SECURE_SSL_REDIRECT="0"),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode != 0
    output = result.stdout + result.stderr
    for check in ("security.W004", "security.W008", "security.W012"):
        assert check in output


PRINT_TRANSPORT = """
import json
from django.conf import settings
print(json.dumps({name: getattr(settings, name, None) for name in (
    "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SECURE_PROXY_SSL_HEADER",
    "AXES_FAILURE_LIMIT", "TRUSTED_PROXY_COUNT",
)} | {"cooloff_seconds": settings.AXES_COOLOFF_TIME.total_seconds()}))
"""


def transport_settings(var_dir, **env: str | None) -> dict:
    result = run_python(PRINT_TRANSPORT, COLLABADMIN_VAR_DIR=str(var_dir), REDIS_URL=UNUSED_REDIS, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_defaults_are_strict(var_dir):
    values = transport_settings(var_dir, DEBUG="0", SECRET_KEY=secrets.token_urlsafe(50))

    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_HSTS_SECONDS"] == 31_536_000
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert (values["AXES_FAILURE_LIMIT"], values["cooloff_seconds"]) == (5, 15 * 60)


def test_the_local_demo_runs_over_plain_http_with_debug_on(var_dir):
    values = transport_settings(var_dir, DEBUG="1")

    assert values["SECURE_SSL_REDIRECT"] is False
    assert values["SESSION_COOKIE_SECURE"] is False
    assert values["CSRF_COOKIE_SECURE"] is False
    assert values["SECURE_HSTS_SECONDS"] == 0
    assert values["SECURE_PROXY_SSL_HEADER"] is None


def test_each_security_variable_overrides_its_default(var_dir):
    values = transport_settings(
        var_dir,
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        SECURE_SSL_REDIRECT="0",
        SECURE_HSTS_SECONDS="600",
        SECURE_HSTS_PRELOAD="0",
        SECURE_PROXY_SSL_HEADER="0",
        LOGIN_FAILURE_LIMIT="3",
        LOGIN_COOLOFF_MINUTES="2",
        TRUSTED_PROXY_COUNT="1",
    )

    assert values["SECURE_SSL_REDIRECT"] is False
    assert values["SECURE_HSTS_SECONDS"] == 600
    assert values["SECURE_HSTS_PRELOAD"] is False
    assert values["SECURE_PROXY_SSL_HEADER"] is None
    assert (values["AXES_FAILURE_LIMIT"], values["cooloff_seconds"], values["TRUSTED_PROXY_COUNT"]) == (3, 120, 1)


@pytest.mark.django_db
def test_with_the_ssl_redirect_on_pages_redirect_but_the_balancers_probes_do_not(settings):
    settings.SECURE_SSL_REDIRECT = True
    client = Client()  # built after the change: SecurityMiddleware reads the setting at start-up

    login = client.get("/login/")
    healthz = client.get("/healthz")

    assert login.status_code == 301
    assert login["Location"] == "https://testserver/login/"
    assert healthz.status_code == 200
