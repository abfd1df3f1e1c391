"""Rate limits counted in Redis, so that one limit holds over every web node.

**Why our own limiter.** django-ratelimit is not available from this project's package
registry, and what we need is small: one counter per (surface, identity) in the shared
Redis. **Why a fixed window.** One atomic Lua script (INCR, and EXPIRE on the first hit)
is one round trip per request, whatever the number of limits it counts (a caller's
``POST /api/v1/sessions/`` counts its token and its address together: measured in
docs/performance.md, two round trips were 8 % of a caller request's web time), and one
short-lived key per identity; its weakness (up to
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
from functools import cache, wraps
from typing import Any

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from redis.commands.core import Script
from rest_framework.throttling import BaseThrottle

from common.client_address import client_ip
from common.redis_client import shared_redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "collabadmin:rate:"

# Count this hit on every key; start a key's window on its first hit. ARGV holds each key's
# window in milliseconds. Returns {count, milliseconds left} per key, flattened.
_HIT = """
local out = {}
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('PEXPIRE', key, ARGV[i]) end
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then redis.call('PEXPIRE', key, ARGV[i]); ttl = tonumber(ARGV[i]) end
  out[#out + 1] = count
  out[#out + 1] = ttl
end
return out
"""

# One (scope, identity, rate) to count; a rate of None is off.
Limit = tuple[str, str, tuple[int, int] | None]


@cache
def _hit_script(client: redis.Redis) -> Script:
    """The script, registered once per client (the clients are cached too, common.redis_client):
    its SHA1 is computed once, and each call is an EVALSHA, the script text not re-sent."""
    return client.register_script(_HIT)


def rate_key(scope: str, identity: str) -> str:
    digest = hashlib.sha256(identity.encode()).hexdigest()[:32]
    return f"{KEY_PREFIX}{scope}:{digest}"


def hit(scope: str, identity: str, rate: tuple[int, int] | None) -> int | None:
    """Count one request of ``identity`` on ``scope``; the seconds to wait if it is over
    ``rate`` (N per S seconds), else None (also when the rate is off or Redis is away)."""
    return hit_all([(scope, identity, rate)])


def hit_all(limits: list[Limit]) -> int | None:
    """Count one request against each limit, in one round trip; the longest wait among the
    limits it is over, else None (limits that are off are not counted)."""
    counted = [(scope, identity, rate) for scope, identity, rate in limits if rate is not None]
    if not counted:
        return None
    keys = [rate_key(scope, identity) for scope, identity, _ in counted]
    windows = [rate[1] * 1000 for _, _, rate in counted]
    try:
        flat = _hit_script(shared_redis())(keys=keys, args=windows)
    except redis.RedisError as error:
        scopes = ", ".join(scope for scope, _, _ in counted)
        logger.warning("rate limit %s not checked, Redis unavailable: the request goes through (%s)", scopes, error)
        return None
    waits = [
        max(1, math.ceil(int(ttl_ms) / 1000))
        for (_, _, (limit, _)), count, ttl_ms in zip(counted, flat[0::2], flat[1::2], strict=True)
        if int(count) > limit
    ]
    return max(waits, default=None)


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
    """A DRF throttle over :func:`hit_all`; ``wait()`` gives DRF the Retry-After, and the
    API's exception handler answers 429 in the API's JSON error format."""

    def limits(self, request: Any) -> list[Limit]:
        raise NotImplementedError

    def allow_request(self, request: Any, view: Any) -> bool:
        self._wait = hit_all(self.limits(request))
        return self._wait is None

    def wait(self) -> float | None:
        return self._wait


def _token_limit(request: Any) -> list[Limit]:
    """Every authenticated API request, per API token (per user for a browser's session,
    which has no token). ``request.auth`` is then the ``ApiToken`` (collabadmin/token_auth.py):
    counted by its id, so a token's count is the same whichever node and whatever the key."""
    token_id = getattr(request.auth, "pk", None)
    if token_id is not None:
        return [("api", f"token:{token_id}", settings.RATE_LIMIT_API)]
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return [("api", f"user:{user.pk}", settings.RATE_LIMIT_API)]
    return []


def _address_limit(request: Any) -> list[Limit]:
    """A caller's request (``POST /api/v1/sessions/``), per client address."""
    address = client_ip(request)
    return [] if address is None else [("session-requests", address, settings.RATE_LIMIT_SESSION_REQUESTS)]


class TokenThrottle(_RedisThrottle):
    """Every API request: RATE_LIMIT_API per token (or user)."""

    def limits(self, request: Any) -> list[Limit]:
        return _token_limit(request)


class CallerRequestThrottle(_RedisThrottle):
    """``POST /api/v1/sessions/``: RATE_LIMIT_API per token and RATE_LIMIT_SESSION_REQUESTS
    per client address, counted together in one round trip (it replaces TokenThrottle)."""

    def limits(self, request: Any) -> list[Limit]:
        return _token_limit(request) + _address_limit(request)
