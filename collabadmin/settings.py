"""Settings for collabadmin, all read from the environment (see the README's table).

Embedded defaults let one command run the whole product on a fresh machine: SQLite under
``var/`` and a real Redis server on a Unix socket under ``var/``. Production sets
``DATABASE_URL``, ``REDIS_URL``, ``SECRET_KEY`` and ``ALLOWED_HOSTS``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from collabadmin import embedded_redis
from collabadmin.env import env_bool, env_int, env_list, env_rate, env_str
from common import redis_config

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
# A PEM file of the CAs that sign the nodes' certificates, for servers whose address is
# https:// (a private CA); empty: the system's trusted CAs.
COLLABADMIN_TLS_CA_BUNDLE = env_str("COLLABADMIN_TLS_CA_BUNDLE", "")

# /metrics (docs/metrics.md): anonymous scrapes only from these addresses or CIDR networks
# (empty: none), otherwise a user holding view_desktop or "Authorization: Bearer <METRICS_TOKEN>" (if set).
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", ["127.0.0.1", "::1"])
METRICS_TOKEN = env_str("METRICS_TOKEN", "")

INSTALLED_APPS = [
    "collabadmin.admin_site.SuperuserAdminConfig",  # django.contrib.admin, superusers only
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    # Swagger UI's files served from our own static files, not a CDN (the CSP allows 'self').
    "drf_spectacular_sidecar",
    # Log-in lockout: counts failures, refuses locked-out log-ins, keeps the log-in audit.
    "axes",
    "failover",
    # Label collab_sessions: django.contrib.sessions already owns "sessions".
    "sessions.apps.CollabSessionsConfig",
    "configsync",
    # The project itself: its management commands (seed_demo, embedded_redis, worker_liveness).
    "collabadmin",
]

MIDDLEWARE = [
    # First: every log line of the request, and its response, carry the request id.
    "collabadmin.request_id.request_id_middleware",
    "django.middleware.security.SecurityMiddleware",
    "collabadmin.security.ContentSecurityPolicyMiddleware",
    # Compresses the shared live fragments once per render, after the bidi filter's pass.
    "collabadmin.fragment_gzip.SharedFragmentGzipMiddleware",
    # Sees every HTML response last (middleware answer in reverse): pages, fragments, admin.
    "collabadmin.bidi.BidiControlMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Log-in POSTs per user name (RATE_LIMIT_LOGIN): 429 before any password is checked.
    "collabadmin.login_rate_limit.LoginRateLimitMiddleware",
    # Times in the zone the viewer's browser reported (cookie "tz"), else TIME_ZONE.
    "collabadmin.timezones.ViewerTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a refused (locked-out) log-in into the lockout page.
    "axes.middleware.AxesMiddleware",
    # A view that lost the database (restart, failover) answers 503 with Retry-After.
    "collabadmin.database_unavailable.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "collabadmin.urls"
ASGI_APPLICATION = "collabadmin.asgi.application"
# Threads per web process that run HTTP views (each holds one database connection).
HTTP_THREADS = env_int("HTTP_THREADS", 10, minimum=1)
# The overview and sessions pages get their fragment with the event on their socket
# instead of fetching it (console/pushed_fragments.py); off: they fetch, as before.
LIVE_PUSH = env_bool("LIVE_PUSH", True)
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
            # ``when``: the one format of a time (collabadmin/timezones.py), in every template.
            "builtins": ["collabadmin.template_filters"],
        },
    },
]

# --- Database -------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'collabadmin.sqlite3'}")
# Web requests run on a fixed pool of threads (collabadmin/asgi.py): a thread keeps its
# connection for DB_CONN_MAX_AGE seconds instead of opening one per request, and checks it
# is still alive before reusing it (a restarted PostgreSQL costs no failed request).
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0), conn_health_checks=True
    )
}
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
# One Redis server (REDIS_URL), or a master found through Redis Sentinel (REDIS_SENTINELS,
# REDIS_SENTINEL_MASTER: common/redis_config.py), or else the embedded one.
try:
    REDIS_SENTINEL = redis_config.sentinel_from_env()
except redis_config.RedisConfigError as exc:
    raise ImproperlyConfigured(str(exc)) from None
REDIS_URL = env_str("REDIS_URL", "")
REDIS_EMBEDDED = not REDIS_URL and REDIS_SENTINEL is None
if REDIS_EMBEDDED:
    REDIS_URL = f"unix://{embedded_redis.ensure_running(VAR_DIR)}"


def _celery_url(redis_url: str) -> str:
    """Celery (kombu) spells a Unix socket ``redis+socket://``; redis-py spells it ``unix://``."""
    parts = urlsplit(redis_url)
    if parts.scheme == "unix":
        return redis_url.replace("unix://", "redis+socket://", 1)
    return redis_url


REDIS_MAX_CONNECTIONS = env_int("REDIS_MAX_CONNECTIONS", 1000, minimum=10)
# redis-py 8 raises once a pool holds 100 connections; the cap is explicit.
if REDIS_SENTINEL is not None:
    _channel_layer_host = REDIS_SENTINEL.channel_layer_host(max_connections=REDIS_MAX_CONNECTIONS)
else:
    _channel_layer_host = {"address": REDIS_URL, "max_connections": REDIS_MAX_CONNECTIONS}

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
            "hosts": [_channel_layer_host],
            "prefix": env_str("CHANNEL_LAYER_PREFIX", "collabadmin"),
        },
    },
}

# --- Celery: JSON only, bounded work ----------------------------------------------------
CELERY_BROKER_URL = REDIS_SENTINEL.kombu_url() if REDIS_SENTINEL is not None else _celery_url(REDIS_URL)
CELERY_RESULT_BACKEND = CELERY_BROKER_URL
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 120, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 100, minimum=1)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# The worker keeps the project's JSON logging (collabadmin/celery.py: setup_logging).
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Reliability (issue 8, docs/architecture.md "Celery: what survives a dead worker"). Every
# task is safe to run twice (ids in, compare-and-set services, epochs), so a message is
# acknowledged only when its task has finished: a worker that dies mid-task leaves it to
# be delivered again. A pool process that dies (SIGKILL, OOM) has its message requeued at
# once; a whole worker that dies has its messages restored by the next worker once they
# are older than the visibility time-out, which must exceed the longest task (Verify and
# Sync's 600 s hard limit) or a running task would be delivered a second time.
# A task that fails or times out is still acknowledged (no poison-message loop).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT = True
# On a lost broker connection running tasks finish (their acknowledgement is lost, so the
# message may run again later: harmless). Cancelling them would lose the work outright when
# Redis restarts without persistence, since the unacknowledged message is gone with it.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 900, minimum=1)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    # Look for abandoned messages every 10 s (kombu's default is every 100 s).
    "unacked_restore_interval": 10,
    "unacked_restore_throttle": 1,
}
if REDIS_SENTINEL is not None:
    # kombu's Sentinel transport and Celery's Sentinel result store find the master by name.
    CELERY_BROKER_TRANSPORT_OPTIONS.update(REDIS_SENTINEL.kombu_transport_options())
    CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = REDIS_SENTINEL.kombu_transport_options()
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "collabadmin")
# Where a worker writes its liveness status every second (collabadmin/worker_watchdog.py),
# read by `manage.py worker_liveness`; give each worker on one host its own.
WORKER_STATUS_FILE = Path(env_str("COLLABADMIN_WORKER_STATUS_FILE", str(VAR_DIR / "celery-worker.json")))
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
    # Phone legs of a switched-away Media Blender marked unknown (safety net for a lost
    # message), then ended if Policy.phone_untracked_grace_seconds is set (off by default).
    "phone-untracked-sweep": {
        "task": "sessions.phone_untracked_sweep",
        "schedule": 5.0,
        "options": {"expires": 4.5},
    },
    # Drained servers (planned maintenance): late queued sessions handed on, deadlines kept.
    "drain-deadlines": {"task": "sessions.drain_deadlines", "schedule": 5.0, "options": {"expires": 4.5}},
    # The history of the overview's queue / active-sessions chart (pruned after 24 h).
    "record-session-sample": {"task": "sessions.record_sample", "schedule": 10.0, "options": {"expires": 9.0}},
    # Safety net only: a notification whose retry was lost with Redis is sent again.
    "resend-lost-notifications": {
        "task": "failover.notifications_resend_lost",
        "schedule": 30.0,
        "options": {"expires": 25.0},
    },
}

# --- Notifications (docs/operations.md, "Notifications") ---------------------------------
# E-mail goes through Django's SMTP back-end; channels themselves are set in the admin.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "collabadmin@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# The console's address as people reach it, for the links in notifications.
COLLABADMIN_SITE_URL = env_str("COLLABADMIN_SITE_URL", "http://localhost:8000").rstrip("/")
# Retries: the wait doubles from the base up to the cap, for at least NOTIFY_RETRY_HOURS.
# The cap stays below the broker's visibility time-out, or a waiting retry would be
# delivered twice: by default 600 s, or two thirds of a shorter visibility time-out.
notify_retry_cap_default = min(600.0, CELERY_VISIBILITY_TIMEOUT * 2 / 3)
NOTIFY_RETRY_MAX_SECONDS = float(env_str("NOTIFY_RETRY_MAX_SECONDS", f"{notify_retry_cap_default:g}"))
NOTIFY_RETRY_BASE_SECONDS = float(env_str("NOTIFY_RETRY_BASE_SECONDS", f"{min(5.0, NOTIFY_RETRY_MAX_SECONDS):g}"))
NOTIFY_RETRY_HOURS = float(env_str("NOTIFY_RETRY_HOURS", "24"))
if not 0 < NOTIFY_RETRY_BASE_SECONDS <= NOTIFY_RETRY_MAX_SECONDS < CELERY_VISIBILITY_TIMEOUT:
    raise ImproperlyConfigured(
        "Need 0 < NOTIFY_RETRY_BASE_SECONDS <= NOTIFY_RETRY_MAX_SECONDS < CELERY_VISIBILITY_TIMEOUT."
    )
# The notification tasks have a queue of their own, served by the notifier worker with many
# threads (`-Q <queue> --pool threads --concurrency 20`): a slow receiver then holds one
# thread, never the workers that run the failover's own tasks (on the ordinary 2-process
# worker a receiver answering after 5 s delayed a fast channel's p99 to 44.5 s; with the
# notifier, 0.88 s: docs/performance.md). Derived from CELERY_QUEUE, so that deployments
# (and test runs) with a queue of their own get a notification queue of their own too.
# Empty: the default queue, for a setup that runs no notifier worker.
NOTIFY_QUEUE = env_str("NOTIFY_QUEUE", f"{CELERY_TASK_DEFAULT_QUEUE}.notifications")
CELERY_TASK_ROUTES = {"failover.notification_send": {"queue": NOTIFY_QUEUE}} if NOTIFY_QUEUE else {}
# One webhook POST waits at most this long (a slow receiver holds one worker slot, no more).
NOTIFY_HTTP_TIMEOUT_SECONDS = float(env_str("NOTIFY_HTTP_TIMEOUT_SECONDS", "10"))

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
        "collabadmin.token_auth.ApiTokenAuthentication",
    ],
    # Every endpoint declares its permission (common.permissions.requires); undeclared reads
    # need view_desktop, undeclared writes a superuser.
    "DEFAULT_PERMISSION_CLASSES": ["common.permissions.HasRolePermission"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "common.api_conventions.Pagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "common.api_conventions.exception_handler",
    # Per token (RATE_LIMIT_API): 429 with Retry-After through DRF's Throttled.
    "DEFAULT_THROTTLE_CLASSES": ["common.rate_limit.TokenThrottle"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "collabadmin API",
    "DESCRIPTION": "Control plane of the Collaboration Server: servers, peer links, agents, sessions.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # Swagger UI from drf-spectacular-sidecar's static files: no CDN, works offline and
    # under the Content Security Policy's script-src 'self'.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # No call to swagger.io's online validator (it would send our schema URL out, and the
    # CSP refuses it anyway).
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    # One name per choice set that several serializers share under one field name ("kind",
    # "state"); without it drf-spectacular invents hashed enum names and warns.
    "ENUM_NAME_OVERRIDES": {
        "PeerKindEnum": "failover.choices.PeerKind",
        "LinkStateEnum": "failover.choices.LinkState",
        "AlertKindEnum": "failover.choices.AlertKind",
        "AlertSeverityEnum": "failover.choices.AlertSeverity",
        "NotificationKindEnum": "failover.choices.NotificationKind",
        "NotificationEventEnum": "failover.choices.NotificationEvent",
        "FailoverKindEnum": "failover.choices.FailoverKind",
        "WizardKindEnum": "failover.choices.WizardKind",
        "WizardStateEnum": "failover.choices.WizardState",
        "SyncRunStateEnum": "failover.choices.SyncRunState",
        "ApiTokenStateEnum": "failover.choices.ApiTokenState",
        "AgentStateEnum": "sessions.choices.AgentState",
        "SessionStateEnum": "sessions.choices.SessionState",
    },
}

# --- Caches -------------------------------------------------------------------------------
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    # The overview's server cards, each rendered once per change of what it shows
    # (console/server_cards.py). Per process; 24 cards of about 9 KB a page and view: 2,048
    # cards hold every page of 1,000 servers for several readers' classes and zones (~18 MB).
    "server_cards": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "server-cards",
        "TIMEOUT": None,
        "OPTIONS": {"MAX_ENTRIES": 2048},
    },
    # The sessions page's rows, likewise (console/session_rows.py): 50 rows of about 1.3 KB
    # a page and view; a waiting caller's row is new each second, so old ones leave the LRU.
    "session_rows": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "session-rows",
        "TIMEOUT": None,
        "OPTIONS": {"MAX_ENTRIES": 4096},
    },
}

# --- Internationalization, static ------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"  # the default; each viewer sees their own zone (collabadmin/timezones.py)
# One date and time format everywhere, the Django admin included (collabadmin/formats/en).
FORMAT_MODULE_PATH = ["collabadmin.formats"]
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# In development whitenoise serves straight from the apps' folders, no collectstatic needed.
WHITENOISE_USE_FINDERS = DEBUG
STATICFILES_DIRS = [BASE_DIR / "static"]

# --- Security (issue 8): safe production defaults, each one switchable by environment ------
# With DEBUG off every default below is the strict one and `manage.py check --deploy` is
# clean (tests/security/test_deploy_check.py). With DEBUG on (bin/run, bin/test) the
# transport settings default off so that the local demo works over plain http.
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # scripts read the token from the meta tag in base.html, not the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
# Load balancers probe the nodes over plain http: the probes never redirect.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# Behind a TLS-terminating balancer, trust its X-Forwarded-Proto (the balancer must set or
# strip it). Off when the ASGI server itself terminates TLS.
if env_bool("SECURE_PROXY_SSL_HEADER", not DEBUG):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 12 * 3600, minimum=60)  # one working day
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
# Only the header's directive: nothing is submitted to the browsers' preload list.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)

# Content Security Policy on every HTML response (collabadmin/security.py explains the
# policy and its one narrower exception, the browsable API and its Swagger UI docs).
CSP_REPORT_ONLY = env_bool("CSP_REPORT_ONLY", False)

# Log-in lockout (django-axes): after LOGIN_FAILURE_LIMIT failed log-ins for one user name
# from one address, that pair is refused for LOGIN_COOLOFF_MINUTES, on every log-in form
# (/login/, /agent/login/, /admin/login/). By name *and* address: agents share an office
# NAT address, so locking a whole address would lock out the contact centre, and locking a
# name alone would let anyone lock any agent out.
AUTHENTICATION_BACKENDS = [
    "collabadmin.security.LockoutBackend",  # refuses a locked-out pair before any password check
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = env_bool("LOGIN_LOCKOUT_ENABLED", True)
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "collabadmin.security.lockout_response"
# Every failure is kept (time, address, user name, user agent, path): the log-in audit,
# readable in the Django admin under "Axes".
AXES_ENABLE_ACCESS_FAILURE_LOG = True
AXES_SENSITIVE_PARAMETERS = ["password"]
# The client address: REMOTE_ADDR, or with TRUSTED_PROXY_COUNT=N (N balancers/proxies in
# front, each appending to X-Forwarded-For) the address the outermost of them saw.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)
AXES_CLIENT_IP_CALLABLE = "common.client_address.client_ip"

# Rate limits (common/rate_limit.py), counted in Redis so they hold across web nodes; each
# "N/S" (N requests per S seconds), "0" or empty turns one off. Over a limit: 429 with
# Retry-After. The caller form is per client address (a person types slowly); the sessions
# API's create is per address and the API per token, generous because one integration
# sends every caller of a contact centre through one token and one address (the caller
# benchmark: 300+ requests/s); log-in is per user name (a rate; the lockout above stays).
RATE_LIMIT_CALLER = env_rate("RATE_LIMIT_CALLER", "20/60")
RATE_LIMIT_SESSION_REQUESTS = env_rate("RATE_LIMIT_SESSION_REQUESTS", "60000/60")
RATE_LIMIT_API = env_rate("RATE_LIMIT_API", "60000/60")
RATE_LIMIT_LOGIN = env_rate("RATE_LIMIT_LOGIN", "10/60")

# API tokens (failover/models/api_tokens.py): a new token expires after
# API_TOKEN_DEFAULT_DAYS unless its creator picks 1..API_TOKEN_MAX_DAYS days.
API_TOKEN_MAX_DAYS = env_int("API_TOKEN_MAX_DAYS", 365, minimum=1)
API_TOKEN_DEFAULT_DAYS = min(env_int("API_TOKEN_DEFAULT_DAYS", 90, minimum=1), API_TOKEN_MAX_DAYS)

# --- Logging: one JSON object per line on stderr ----------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "collabadmin.logging.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["stderr"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Django's default configuration gives "django" a plain-text console handler while
        # DEBUG is on: every 404 was logged twice, once not as JSON. The root's is enough.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        # uvicorn installs plain-text handlers of its own before it loads the application;
        # Django applies this configuration when it loads, so the web server's own lines
        # ("Started server process", WebSocket accepted) are JSON too.
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}
