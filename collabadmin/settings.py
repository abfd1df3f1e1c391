"""Settings for collabadmin, all read from the environment (see the README's table).

Embedded defaults let one command run the whole product on a fresh machine: SQLite under
``var/`` and a real Redis server on a Unix socket under ``var/``. Production sets
``DATABASE_URL``, ``REDIS_URL``, ``SECRET_KEY`` and ``ALLOWED_HOSTS``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from collabadmin import embedded_redis
from collabadmin.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("COLLABADMIN_VAR_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", False)

DEV_SECRET_KEY = "dev-insecure-collabadmin-secret-do-not-use-in-production"  # noqa: S105 (refused below)
SECRET_KEY = env_str("SECRET_KEY", DEV_SECRET_KEY)
if not DEBUG and SECRET_KEY == DEV_SECRET_KEY:
    raise ImproperlyConfigured(
        "Refusing to start with the development SECRET_KEY while DEBUG is off. "
        "Set SECRET_KEY to a long random value (for example: python -c "
        "'import secrets; print(secrets.token_urlsafe(50))'), or set DEBUG=1 for development."
    )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# The name of the Collaboration Server this process serves (issue 3: one node per server).
COLLABADMIN_SERVER_NAME = env_str("COLLABADMIN_SERVER_NAME", "")
# Whether this web process also runs the health monitor (only the lease holder acts).
COLLABADMIN_RUN_MONITOR = env_bool("COLLABADMIN_RUN_MONITOR", True)

# /metrics (docs/metrics.md): anonymous scrapes only from these addresses or CIDR networks
# (empty: none), otherwise a staff user or "Authorization: Bearer <METRICS_TOKEN>" (if set).
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", ["127.0.0.1", "::1"])
METRICS_TOKEN = env_str("METRICS_TOKEN", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "failover",
    # Label collab_sessions: django.contrib.sessions already owns "sessions".
    "sessions.apps.CollabSessionsConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "collabadmin.urls"
ASGI_APPLICATION = "collabadmin.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'collabadmin.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0, minimum=0))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # IMMEDIATE takes the write lock at BEGIN, so select_for_update-style
        # read-then-write transactions serialize instead of failing with "database is locked".
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so that simulator, worker and web processes started by the
    # tests share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: Celery broker, channel layer, readiness -----------------------------------
REDIS_URL = env_str("REDIS_URL", "")
REDIS_EMBEDDED = not REDIS_URL
if REDIS_EMBEDDED:
    REDIS_URL = f"unix://{embedded_redis.ensure_running(VAR_DIR)}"


def _celery_url(redis_url: str) -> str:
    """Celery (kombu) spells a Unix socket ``redis+socket://``; redis-py spells it ``unix://``."""
    parts = urlsplit(redis_url)
    if parts.scheme == "unix":
        return redis_url.replace("unix://", "redis+socket://", 1)
    return redis_url


REDIS_MAX_CONNECTIONS = env_int("REDIS_MAX_CONNECTIONS", 1000, minimum=10)

# Redis pub/sub rather than the core list-based layer: measured in docs/performance.md,
# it broadcasts to 1,000 desktops with p99 under 50 ms where the core layer backs up for
# seconds, costs a quarter of the CPU, and survives a Redis restart without failing every
# consumer. It delivers at most once; the database stays the truth and desktops reload
# the snapshot on reconnect or on a sequence gap. Channel names are global to a Redis
# server (not per database), hence a prefix per deployment.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {
            # redis-py 8 raises once a pool holds 100 connections; the cap is explicit.
            "hosts": [{"address": REDIS_URL, "max_connections": REDIS_MAX_CONNECTIONS}],
            "prefix": env_str("CHANNEL_LAYER_PREFIX", "collabadmin"),
        },
    },
}

# --- Celery: JSON only, bounded work ----------------------------------------------------
CELERY_BROKER_URL = _celery_url(REDIS_URL)
CELERY_RESULT_BACKEND = _celery_url(REDIS_URL)
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 120, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 100, minimum=1)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "collabadmin")
CELERY_TIMEZONE = "UTC"
# Tasks that live outside an app's tasks.py module.
CELERY_IMPORTS = ["failover.monitor.watchdog"]
# Periodic work: each entry expires before the next tick, so ticks never pile up, and
# every task is safe to run twice (see docs/architecture.md).
CELERY_BEAT_SCHEDULE = {
    "monitor-watchdog": {"task": "failover.monitor_watchdog", "schedule": 5.0, "options": {"expires": 4.5}},
    "fail-back": {"task": "failover.fail_back", "schedule": 30.0, "options": {"expires": 25.0}},
    # A route not confirmed within Policy.transit_timeout_seconds (default 10 s) goes back
    # to the head of the queue: a 1 s tick keeps the overshoot small.
    "requeue-expired-transits": {
        "task": "sessions.requeue_expired_transits",
        "schedule": 1.0,
        "options": {"expires": 0.9},
    },
    # Safety net only: drains follow events; this catches a lost message or a dead worker.
    "drain-all-queues": {"task": "sessions.drain_all", "schedule": 10.0, "options": {"expires": 9.0}},
    "end-hung-up-after-grace": {
        "task": "sessions.end_hung_up_after_grace",
        "schedule": 5.0,
        "options": {"expires": 4.5},
    },
}

# --- Auth, API --------------------------------------------------------------------------
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "collabadmin.api.Pagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "collabadmin.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "collabadmin API",
    "DESCRIPTION": "Control plane of the Collaboration Server: servers, peer links, agents, sessions.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # One name per choice set that several serializers share under one field name ("kind",
    # "state"); without it drf-spectacular invents hashed enum names and warns.
    "ENUM_NAME_OVERRIDES": {
        "PeerKindEnum": "failover.choices.PeerKind",
        "LinkStateEnum": "failover.choices.LinkState",
        "AlertKindEnum": "failover.choices.AlertKind",
        "FailoverKindEnum": "failover.choices.FailoverKind",
        "WizardKindEnum": "failover.choices.WizardKind",
        "WizardStateEnum": "failover.choices.WizardState",
        "SyncRunStateEnum": "failover.choices.SyncRunState",
        "AgentStateEnum": "sessions.choices.AgentState",
        "SessionStateEnum": "sessions.choices.SessionState",
    },
}

# --- Internationalization, static ------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# In development whitenoise serves straight from the apps' folders, no collectstatic needed.
WHITENOISE_USE_FINDERS = DEBUG
STATICFILES_DIRS = [BASE_DIR / "static"]

# --- Security (tightened further when DEBUG is off) --------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the cookie-free meta tag; see base template.
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 3600, minimum=0)

# --- Logging: one JSON object per line on stderr ----------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "collabadmin.logging.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["stderr"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
