"""Probes for load balancers and orchestrators: liveness and readiness."""

from __future__ import annotations

import time

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from collabadmin.redis_client import shared_redis
from collabadmin.task_queue import queue_state


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving requests; touches no dependency."""
    return JsonResponse({"status": "ok", "server": settings.COLLABADMIN_SERVER_NAME or None})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "not ready"
        return f"{type(exc).__name__}: {exc}"
    return None


def _check_redis() -> str | None:
    # Through the product's one factory: with Sentinel this is the current master, the
    # one every other part of the node talks to.
    try:
        shared_redis().ping()
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready to take traffic: the database and Redis both answer. 503 otherwise.

    Also says how long background work has waited in the Celery queue (``tasks``), with a
    warning when no worker is taking it; that alone leaves the node ready."""
    checks = {}
    for name, check in (("database", _check_database), ("redis", _check_redis)):
        started = time.perf_counter()
        error = check()
        checks[name] = {
            "ok": error is None,
            "ms": round((time.perf_counter() - started) * 1000, 2),
            **({"error": error} if error else {}),
        }
    ready = all(check["ok"] for check in checks.values())
    body: dict[str, object] = {"status": "ok" if ready else "unavailable", "checks": checks}
    if checks["redis"]["ok"]:
        body.update(_task_queue())
    return JsonResponse(body, status=200 if ready else 503)


def _task_queue() -> dict[str, object]:
    """The Celery queue's backlog, for people and monitors: reported, never a reason to take
    this node out of the balancer (it serves pages and callers without a worker)."""
    try:
        tasks = queue_state(shared_redis(), settings.CELERY_TASK_DEFAULT_QUEUE)
    except redis.RedisError:
        return {}
    warnings = []
    if tasks.stalled:
        warnings.append(
            f"background work has waited {tasks.oldest_wait_seconds:.0f} s in queue {tasks.queue!r}: "
            "no Celery worker is taking it (is one running? a stuck one leaves for its supervisor to restart)"
        )
    return {"tasks": tasks.as_dict(), "warnings": warnings}
