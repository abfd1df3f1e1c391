"""Probes for load balancers and orchestrators: liveness and readiness."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.http.request import split_domain_port, validate_host
from django.utils.http import http_date
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from collabadmin.task_queue import queue_state, watched_queues
from common.redis_client import shared_redis
from failover.models import Server


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving requests; touches no dependency."""
    return JsonResponse({"status": "ok", "server": settings.COLLABADMIN_SERVER_NAME or None})


def _healthz_body() -> bytes:
    return json.dumps({"status": "ok", "server": settings.COLLABADMIN_SERVER_NAME or None}).encode()


def host_allowed(scope: dict) -> bool:
    """Django's own ALLOWED_HOSTS rule, for a request that never reaches Django."""
    host = next((value.decode("latin1") for name, value in scope.get("headers", ()) if name == b"host"), "")
    domain, _ = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS or ([".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
    return bool(domain) and validate_host(domain, allowed)


class HealthzFirst:
    """ASGI: answer ``GET /healthz`` on the event loop, ahead of the node's HTTP work.

    Every other request goes to ``app`` (Django on a pool of threads, collabadmin/asgi.py).
    Through Django, ``/healthz`` waited for a free thread like any request, so a node busy
    with more requests than its threads answered its probe late and looked dead: one late
    answer got a live server declared failed. Answered here it costs one turn of the event
    loop, whatever the queue. Same body and headers as the Django view (which still serves
    the test client and any other way in); a Host not in ``ALLOWED_HOSTS`` is left to
    Django, which refuses it.
    """

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app
        self.body = _healthz_body()

    async def __call__(self, scope: dict, receive, send) -> None:
        if not self._is_healthz(scope):
            await self.app(scope, receive, send)
            return
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self.body)).encode()),
            (b"cache-control", b"max-age=0, no-cache, no-store, must-revalidate, private"),
            (b"expires", http_date().encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})

    @staticmethod
    def _is_healthz(scope: dict) -> bool:
        if scope["type"] != "http" or scope.get("method") != "GET":
            return False
        path, root = scope.get("path", ""), scope.get("root_path", "")
        if not path.startswith(root) or path[len(root) :] != "/healthz":
            return False
        return host_allowed(scope)


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
    """Ready to take traffic: the database and Redis both answer, and this node's server is
    not draining. 503 otherwise: a draining server's nodes answer ``"status": "draining"``
    with the drain's reason, so the load balancer sends new callers elsewhere while the
    node goes on serving its agents and active sessions (HAProxy keeps established
    connections of a server it marks down).

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
    drain_reason = _drain_reason() if checks["database"]["ok"] else None
    if drain_reason is not None:
        ready = False
        body.update(status="draining", reason="draining", drain_reason=drain_reason)
    return JsonResponse(body, status=200 if ready else 503)


def _drain_reason() -> str | None:
    """The drain's reason when this node's server is draining (planned maintenance)."""
    name = settings.COLLABADMIN_SERVER_NAME
    if not name:
        return None
    row = Server.objects.filter(name=name, drain_started_at__isnull=False).values_list("drain_reason", flat=True)
    return next(iter(row), None)


def _task_queue() -> dict[str, object]:
    """The Celery queues' backlog, for people and monitors: reported, never a reason to take
    this node out of the balancer (it serves pages and callers without a worker).
    ``tasks`` is the default queue (the worker's), ``queues`` every watched one (also the
    notifier's): a stopped notifier leaves alerts unsent while everything else works."""
    try:
        states = [queue_state(shared_redis(), queue) for queue in watched_queues()]
    except redis.RedisError:
        return {}
    warnings = [
        f"background work has waited {tasks.oldest_wait_seconds:.0f} s in queue {tasks.queue!r}: "
        f"no Celery {_taker(tasks.queue)} is taking it "
        "(is one running? a stuck one leaves for its supervisor to restart)"
        for tasks in states
        if tasks.stalled
    ]
    return {"tasks": states[0].as_dict(), "queues": [tasks.as_dict() for tasks in states], "warnings": warnings}


def _taker(queue: str) -> str:
    return "worker" if queue == settings.CELERY_TASK_DEFAULT_QUEUE else "notifier (celery worker --notifier)"
