"""The log-in rate limit (``RATE_LIMIT_LOGIN``): POSTs to every log-in form, per user name.

A middleware rather than a decorator because three views take log-ins (``/login/``,
``/agent/login/``, ``/admin/login/``) and two of them are Django's own. A rate, not a
lockout: django-axes still locks a name and address pair after failed passwords; this
caps how fast anyone may try one name at all, from any number of addresses.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from common.rate_limit import hit, limited_response, login_name


@cache
def login_paths() -> frozenset[str]:
    return frozenset({reverse("login"), reverse("agent:login"), reverse("admin:login")})


def _refused(request: HttpRequest) -> HttpResponse | None:
    """The 429 page when this request is a log-in over the rate for its user name."""
    if request.method != "POST" or request.path not in login_paths() or not (name := login_name(request)):
        return None
    retry_after = hit("login", name, settings.RATE_LIMIT_LOGIN)
    return None if retry_after is None else limited_response(request, retry_after)


class LoginRateLimitMiddleware:
    """Sync and async: under ASGI every other middleware is async, and a sync-only one
    would move every request through a thread hop. Only a log-in POST goes to a thread
    (Redis and the page's rendering are blocking)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self._acall(request)
        return _refused(request) or self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.path in login_paths():
            refused = await sync_to_async(_refused)(request)
            if refused is not None:
                return refused
        return await self.get_response(request)
