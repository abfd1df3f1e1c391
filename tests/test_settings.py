"""Settings come from the environment, and refuse what would be unsafe or ambiguous."""

from __future__ import annotations

import json

import pytest

from collabadmin import embedded_redis
from tests.processes import run_python

PRINT_SETTINGS = """
import json
from django.conf import settings
print(json.dumps({
    "debug": settings.DEBUG,
    "engine": settings.DATABASES["default"]["ENGINE"],
    "db_name": settings.DATABASES["default"]["NAME"],
    "db_host": settings.DATABASES["default"].get("HOST"),
    "redis_url": settings.REDIS_URL,
    "redis_embedded": settings.REDIS_EMBEDDED,
    "broker": settings.CELERY_BROKER_URL,
    "channel_hosts": settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"],
    "allowed_hosts": settings.ALLOWED_HOSTS,
    "csrf_trusted_origins": settings.CSRF_TRUSTED_ORIGINS,
    "serializer": settings.CELERY_TASK_SERIALIZER,
    "accept": settings.CELERY_ACCEPT_CONTENT,
    "time_limit": settings.CELERY_TASK_TIME_LIMIT,
    "broker_options": settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    "result_backend": settings.CELERY_RESULT_BACKEND,
    "result_options": getattr(settings, "CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS", None),
    "notify_retry": [settings.NOTIFY_RETRY_BASE_SECONDS, settings.NOTIFY_RETRY_MAX_SECONDS],
}))
"""


@pytest.fixture
def var_dir(tmp_path):
    """A private var/ folder; an embedded Redis started in it is stopped afterwards."""
    yield tmp_path
    embedded_redis.stop(tmp_path)


# Settings load without touching Redis when REDIS_URL is set; tests that are not about the
# embedded Redis name an unused address so that none is started.
UNUSED_REDIS = "redis://127.0.0.1:6399/0"


def settings_with(var_dir, **env):
    env.setdefault("REDIS_URL", UNUSED_REDIS)
    result = run_python(PRINT_SETTINGS, COLLABADMIN_VAR_DIR=str(var_dir), **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_settings_refuse_the_development_secret_key(var_dir):
    result = run_python(
        PRINT_SETTINGS, COLLABADMIN_VAR_DIR=str(var_dir), DEBUG="0", SECRET_KEY=None, REDIS_URL=UNUSED_REDIS
    )

    assert result.returncode != 0
    assert "Refusing to start with the development SECRET_KEY while DEBUG is off" in result.stderr


def test_production_settings_start_with_a_real_secret_key(var_dir):
    values = settings_with(var_dir, DEBUG="0", SECRET_KEY="x" * 50, ALLOWED_HOSTS="collab.example.com")

    assert values["debug"] is False
    assert values["allowed_hosts"] == ["collab.example.com"]


def test_an_unparseable_boolean_stops_start_up_with_the_variable_named(var_dir):
    result = run_python(PRINT_SETTINGS, COLLABADMIN_VAR_DIR=str(var_dir), DEBUG="maybe", REDIS_URL=UNUSED_REDIS)

    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def test_the_default_database_is_sqlite_under_the_var_folder(var_dir):
    values = settings_with(var_dir, DEBUG="1", DATABASE_URL=None)

    assert values["engine"] == "django.db.backends.sqlite3"
    assert values["db_name"] == str(var_dir / "collabadmin.sqlite3")


def test_database_url_selects_postgresql(var_dir):
    values = settings_with(var_dir, DEBUG="1", DATABASE_URL="postgres://collab:pw@db.internal:5433/collab")

    assert values["engine"] == "django.db.backends.postgresql"
    assert values["db_host"] == "db.internal"
    assert values["db_name"] == "collab"


def test_lists_are_read_comma_separated(var_dir):
    values = settings_with(
        var_dir,
        DEBUG="1",
        ALLOWED_HOSTS="a.example.com, b.example.com",
        CSRF_TRUSTED_ORIGINS="https://a.example.com,https://b.example.com",
    )

    assert values["allowed_hosts"] == ["a.example.com", "b.example.com"]
    assert values["csrf_trusted_origins"] == ["https://a.example.com", "https://b.example.com"]


def test_without_redis_url_an_embedded_redis_serves_everything_on_a_unix_socket(var_dir):
    values = settings_with(var_dir, DEBUG="1", REDIS_URL=None)

    socket = var_dir / "redis.sock"
    assert values["redis_embedded"] is True
    assert values["redis_url"] == f"unix://{socket}"
    assert values["broker"] == f"redis+socket://{socket}"
    assert values["channel_hosts"][0]["address"] == f"unix://{socket}"
    assert socket.exists()


def test_redis_url_is_used_as_given_and_nothing_is_started(var_dir):
    values = settings_with(var_dir, DEBUG="1", REDIS_URL="redis://127.0.0.1:6399/3")

    assert values["redis_embedded"] is False
    assert values["broker"] == "redis://127.0.0.1:6399/3"
    assert not (var_dir / "redis.sock").exists()


def test_redis_sentinel_serves_the_broker_the_results_and_the_channel_layer_and_nothing_is_started(var_dir):
    values = settings_with(
        var_dir,
        DEBUG="1",
        REDIS_URL=None,
        REDIS_SENTINELS="10.0.0.1:26379, 10.0.0.2:26380,[::1]:26381",
        REDIS_SENTINEL_MASTER="collab",
        REDIS_SENTINEL_PASSWORD="s3ntinel",
        REDIS_PASSWORD="p@ss word",
        REDIS_DB="2",
    )

    assert values["redis_embedded"] is False
    assert not (var_dir / "redis.sock").exists()
    # kombu's spelling: one URL per sentinel, the master's credentials and database in each.
    assert values["broker"] == (
        "sentinel://:p%40ss%20word@10.0.0.1:26379/2;sentinel://:p%40ss%20word@10.0.0.2:26380/2;"
        "sentinel://:p%40ss%20word@[::1]:26381/2"
    )
    assert values["result_backend"] == values["broker"]
    sentinel_kwargs = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0, "password": "s3ntinel"}
    for options in (values["broker_options"], values["result_options"]):
        assert options["master_name"] == "collab"
        assert options["sentinel_kwargs"] == sentinel_kwargs
    assert values["broker_options"]["visibility_timeout"] > 0  # the rest of the options kept
    (host,) = values["channel_hosts"]
    assert host["sentinels"] == [["10.0.0.1", 26379], ["10.0.0.2", 26380], ["::1", 26381]]
    assert host["master_name"] == "collab"
    assert host["sentinel_kwargs"] == sentinel_kwargs
    assert (host["db"], host["password"]) == (2, "p@ss word")


@pytest.mark.parametrize(
    ("env", "refusal"),
    [
        (
            {"REDIS_URL": "redis://127.0.0.1:6399/0", "REDIS_SENTINELS": "127.0.0.1:26379"},
            "Set either REDIS_URL (one Redis server) or REDIS_SENTINELS (Sentinel), not both.",
        ),
        ({"REDIS_SENTINELS": "127.0.0.1:26379"}, "REDIS_SENTINEL_MASTER must name the master"),
        ({"REDIS_SENTINELS": "127.0.0.1:port", "REDIS_SENTINEL_MASTER": "m"}, "'127.0.0.1:port' is not host:port"),
        ({"REDIS_SENTINELS": "127.0.0.1:26379", "REDIS_SENTINEL_MASTER": "m", "REDIS_DB": "x"}, "REDIS_DB='x'"),
    ],
)
def test_an_unusable_sentinel_configuration_stops_start_up_with_the_variable_named(var_dir, env, refusal):
    env.setdefault("REDIS_URL", None)
    result = run_python(PRINT_SETTINGS, COLLABADMIN_VAR_DIR=str(var_dir), DEBUG="1", **env)

    assert result.returncode != 0
    assert refusal in result.stderr
    assert not (var_dir / "redis.sock").exists()


def test_the_channel_layer_pool_has_an_explicit_connection_cap(var_dir):
    values = settings_with(var_dir, DEBUG="1", REDIS_MAX_CONNECTIONS="250")

    assert values["channel_hosts"][0]["max_connections"] == 250


@pytest.mark.parametrize("variable", ["REDIS_MAX_CONNECTIONS", "CELERY_TASK_TIME_LIMIT"])
def test_a_bad_integer_stops_start_up_with_the_variable_named(var_dir, variable):
    result = run_python(
        PRINT_SETTINGS, COLLABADMIN_VAR_DIR=str(var_dir), DEBUG="1", REDIS_URL=UNUSED_REDIS, **{variable: "lots"}
    )

    assert result.returncode != 0
    assert f"{variable}='lots' is not an integer" in result.stderr


def test_celery_speaks_json_only_with_time_limits(var_dir):
    values = settings_with(var_dir, DEBUG="1")

    assert values["serializer"] == "json"
    assert values["accept"] == ["json"]
    assert values["time_limit"] > 0


def test_the_notification_retry_cap_follows_a_short_broker_visibility_timeout(var_dir):
    # A waiting retry must come back before the broker would deliver it again. A worker
    # started with a 10 s visibility time-out (the Celery reliability tests do) failed to
    # start at all while the cap's default stayed 600 s.
    assert settings_with(var_dir)["notify_retry"] == [5.0, 600.0]
    base, cap = settings_with(var_dir, CELERY_VISIBILITY_TIMEOUT="9")["notify_retry"]
    assert 0 < base <= cap < 9


def test_a_retry_cap_set_above_the_visibility_timeout_is_refused(var_dir):
    result = run_python(
        PRINT_SETTINGS,
        COLLABADMIN_VAR_DIR=str(var_dir),
        REDIS_URL=UNUSED_REDIS,
        CELERY_VISIBILITY_TIMEOUT="60",
        NOTIFY_RETRY_MAX_SECONDS="600",
    )
    assert result.returncode != 0
    assert "NOTIFY_RETRY_MAX_SECONDS" in result.stderr
