"""The log-in rate limit (``RATE_LIMIT_LOGIN``): POSTs to every log-in form, per user name.

A middleware rather than a decorator because three views take log-ins (``/login/``,
``/agent/login/``, ``/admin/login/``) and two of them are Django's own. A rate, not a
lockout: django-axes still locks a name and address pair after failed passwords; this
caps how fast anyone may try one name at all, from any number of addresses.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from common.rate_limit import hit, limited_response, login_name


@cache
def login_paths() -> frozenset[str]:
    return frozenset({reverse("login"), reverse("agent:login"), reverse("admin:login")})


class LoginRateLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.path in login_paths() and (name := login_name(request)):
            retry_after = hit("login", name, settings.RATE_LIMIT_LOGIN)
            if retry_after is not None:
                return limited_response(request, retry_after)
        return self.get_response(request)
