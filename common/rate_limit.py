"""Rate limits counted in Redis, so that one limit holds over every web node.

**Why our own limiter.** django-ratelimit is not available from this project's package
registry, and what we need is small: one counter per (surface, identity) in the shared
Redis. **Why a fixed window.** One atomic Lua script (INCR, and EXPIRE on the first hit)
is one round trip per request and one short-lived key per identity; its weakness (up to
twice the limit across a window's edge) does not matter for limits meant to stop a script
flooding a queue, and ``Retry-After`` is simply the key's remaining time to live.

**Redis unavailable: fail open.** A warning is logged and the request goes through: a
caller must never be refused because Redis blinked (the client's one-second time-outs,
common/redis_client.py, bound the delay).

The identity is hashed into the key: an API token must not appear in Redis in clear.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from functools import wraps
from typing import Any

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework.throttling import BaseThrottle

from common.client_address import client_ip
from common.redis_client import shared_redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "collabadmin:rate:"

# Count this hit; start the window on the first one. Returns {count, milliseconds left}.
_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {count, ttl}
"""


def rate_key(scope: str, identity: str) -> str:
    digest = hashlib.sha256(identity.encode()).hexdigest()[:32]
    return f"{KEY_PREFIX}{scope}:{digest}"


def hit(scope: str, identity: str, rate: tuple[int, int] | None) -> int | None:
    """Count one request of ``identity`` on ``scope``; the seconds to wait if it is over
    ``rate`` (N per S seconds), else None (also when the rate is off or Redis is away)."""
    if rate is None:
        return None
    limit, window = rate
    try:
        count, ttl_ms = shared_redis().eval(_HIT, 1, rate_key(scope, identity), window * 1000)
    except redis.RedisError as error:
        logger.warning("rate limit %s not checked, Redis unavailable: the request goes through (%s)", scope, error)
        return None
    if int(count) <= limit:
        return None
    return max(1, math.ceil(int(ttl_ms) / 1000))


def limited_response(request: HttpRequest, retry_after: int) -> HttpResponse:
    """The page a person sees over a limit: 429, what happened and when to try again."""
    response = render(request, "rate_limited.html", {"retry_after": retry_after}, status=429)
    response["Retry-After"] = str(retry_after)
    return response


def rate_limited_post(scope: str, setting: str, identity: Callable[[HttpRequest], str | None]) -> Callable:
    """Decorate an HTML view: each POST counts against ``settings.<setting>`` for the
    request's ``identity`` (None: not counted); over it, the 429 page instead of the view."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method == "POST" and (who := identity(request)) is not None:
                retry_after = hit(scope, who, getattr(settings, setting))
                if retry_after is not None:
                    return limited_response(request, retry_after)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def login_name(request: HttpRequest) -> str | None:
    """The user name a log-in form was posted with (case-folded: ``Bob`` and ``bob`` are
    the same attempt at the same account), None without one."""
    name = request.POST.get("username", "").strip()
    return name.casefold() or None


class _RedisThrottle(BaseThrottle):
    """A DRF throttle over :func:`hit`; ``wait()`` gives DRF the Retry-After, and the API's
    exception handler answers 429 in the API's JSON error format."""

    scope = ""
    setting = ""

    def identity(self, request: Any) -> str | None:
        raise NotImplementedError

    def allow_request(self, request: Any, view: Any) -> bool:
        who = self.identity(request)
        self._wait = None if who is None else hit(self.scope, who, getattr(settings, self.setting))
        return self._wait is None

    def wait(self) -> float | None:
        return self._wait


class TokenThrottle(_RedisThrottle):
    """Every authenticated API request, per API token (per user for a browser's session,
    which has no token). ``request.auth`` is then the ``ApiToken`` (collabadmin/token_auth.py):
    counted by its id, so a token's count is the same whichever node and whatever the key."""

    scope = "api"
    setting = "RATE_LIMIT_API"

    def identity(self, request: Any) -> str | None:
        token_id = getattr(request.auth, "pk", None)
        if token_id is not None:
            return f"token:{token_id}"
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return f"user:{user.pk}"
        return None


class ClientAddressThrottle(_RedisThrottle):
    """``POST /api/v1/sessions/`` (a caller's request), per client address."""

    scope = "session-requests"
    setting = "RATE_LIMIT_SESSION_REQUESTS"

    def identity(self, request: Any) -> str | None:
        return client_ip(request)
