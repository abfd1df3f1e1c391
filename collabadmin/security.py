"""Security plumbing of the web nodes (issue 8): the Content Security Policy and the
log-in lockout's hooks into django-axes.

**Content Security Policy: our own middleware, not django-csp.** The policy is one fixed
string: no page has an inline script, an inline event handler or a ``style=""``
attribute, so there is nothing to nonce or hash and none of django-csp's per-view
machinery to carry. What it needs that a static setting cannot give is the WebSocket
origin: ``connect-src`` names ``ws://HOST`` and ``wss://HOST`` of the request's own
(validated) host, so the desktops' live sockets work on any node name without allowing
sockets to anywhere. Its one exception is path-based and lives here too: the browsable
API and the Swagger UI docs under ``/api/`` (third-party templates with ``style``
attributes and an inline ``<style>``) may use inline *styles*; scripts stay ``'self'``
everywhere (Swagger UI is served by drf-spectacular-sidecar from our static files, and
its start-up script is a separate same-origin file: ``SpectacularSwaggerSplitView``).
Django 6.0 ships a built-in CSP middleware; this one is small enough to drop for it.

**Log-in lockout: django-axes, not a service of our own.** Every log-in form of the
product (``/login/``, ``/agent/login/``, ``/admin/login/``) goes through
``django.contrib.auth.authenticate``; axes hooks exactly there (an authentication
backend and the ``user_login_failed`` signal), so a new log-in form is covered without
code, and it brings the audit tables (every failure with time, address, user name and
user agent; shown in the Django admin) and the ``axes_reset*`` unlock commands. Ours
would have needed its own model, migrations and admin for the same result. Settings are
in ``settings.py`` (``LOGIN_FAILURE_LIMIT``, ``LOGIN_COOLOFF_MINUTES``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from axes.backends import AxesStandaloneBackend
from axes.helpers import get_cool_off
from axes.signals import user_locked_out
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

logger = logging.getLogger(__name__)

# --- Content Security Policy ----------------------------------------------------------------

BASE_POLICY: dict[str, list[str]] = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
}
# The browsable API and the Swagger UI docs: third-party templates with style attributes
# and an inline <style> block. Styles only; their scripts are same-origin files.
INLINE_STYLE_PREFIXES = ("/api/",)


def content_security_policy(request: HttpRequest) -> str:
    """The policy for a response to ``request``."""
    policy = {directive: list(sources) for directive, sources in BASE_POLICY.items()}
    try:
        host = request.get_host()  # validated against ALLOWED_HOSTS
    except DisallowedHost:
        host = ""
    if host:
        # 'self' covers same-origin ws/wss in CSP 3, but not in every browser in use.
        policy["connect-src"] += [f"ws://{host}", f"wss://{host}"]
    if request.path.startswith(INLINE_STYLE_PREFIXES):
        policy["style-src"].append("'unsafe-inline'")
    return "; ".join(f"{directive} {' '.join(sources)}" for directive, sources in policy.items())


class ContentSecurityPolicyMiddleware:
    """Adds the Content Security Policy to every HTML response that has none yet.

    ``CSP_REPORT_ONLY`` sends it as ``Content-Security-Policy-Report-Only`` instead (to
    try a change on a live system: violations are reported in the browser's console).
    Sync and async capable, like Django's own middleware, so the ASGI server's requests
    do not hop threads for it.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
        self.header = (
            "Content-Security-Policy-Report-Only"
            if getattr(settings, "CSP_REPORT_ONLY", False)
            else "Content-Security-Policy"
        )

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self._acall(request)
        return self._add_policy(request, self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        return self._add_policy(request, await self.get_response(request))

    def _add_policy(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if response.get("Content-Type", "").startswith("text/html") and self.header not in response:
            response[self.header] = content_security_policy(request)
        return response


# --- Log-in lockout (django-axes) -------------------------------------------------------------


class LockoutBackend(AxesStandaloneBackend):
    """axes' backend, for ``AUTHENTICATION_BACKENDS`` before ``ModelBackend``: refuses a
    locked-out user name and address before any password is checked.

    An ``authenticate()`` call without a request (a management command, the test client's
    ``login()``) is not a log-in over HTTP: there is no address to count failures by, so
    it is left to the next backend instead of raising as axes' own backend does.
    """

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> None:  # type: ignore[override]
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def lockout_message() -> str:
    minutes = int(get_cool_off().total_seconds() // 60)  # type: ignore[union-attr]
    return (
        f"Too many failed log-in attempts: log-in for this user name from your address is locked "
        f"for {minutes} minutes. Wait {minutes} minutes without trying (each new attempt restarts the wait), "
        f"or ask an administrator to unlock it."
    )


def lockout_response(request: HttpRequest, *args: Any) -> HttpResponse:
    """The answer to a locked-out log-in (``AXES_LOCKOUT_CALLABLE``): 429 with Retry-After,
    a page with the reason for a browser, JSON under /api/.

    Takes ``*args``: axes passes ``(original_response, credentials)`` from its sync
    middleware but only ``(credentials)`` from its async one; neither is needed here.
    """
    message = lockout_message()
    retry_after = str(int(get_cool_off().total_seconds()))  # type: ignore[union-attr]
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse({"detail": message}, status=429)
    else:
        response = render(
            request,
            "registration/locked_out.html",
            {"message": message, "back_url": request.path},
            status=429,
        )
    response["Retry-After"] = retry_after
    return response


@receiver(user_locked_out, dispatch_uid="collabadmin.security.log_lockout")
def log_lockout(
    sender: object, request: HttpRequest, username: str | None, ip_address: str | None, **_: object
) -> None:
    """A lockout is a security event: one structured log line (the failures themselves are
    in axes' AccessFailureLog, shown in the Django admin)."""
    logger.warning(
        "log-in locked out after %s failures",
        settings.AXES_FAILURE_LIMIT,
        extra={"event": "login.locked_out", "username": username, "ip_address": ip_address, "path": request.path},
    )
