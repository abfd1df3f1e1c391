"""Times in the viewer's time zone, in one format, with the zone shown.

Every page renders its times on the server (the live updates are server-rendered
fragments too), so one format (``DATETIME_FORMAT`` in ``collabadmin/formats``, e.g.
``2026-12-03 14:05:09 CET``) serves the console, the Agent desktop, the caller's page and
the Django admin alike. The viewer's zone comes from the browser: ``static/js/timezone.js``
(loaded by every page, our own file: the Content Security Policy allows no inline script)
keeps the cookie ``tz`` set to the browser's IANA zone name, and
:class:`ViewerTimeZoneMiddleware` activates it for the request. Without the cookie (a
first visit, a script-less browser, a tool) the times are in ``TIME_ZONE``, still with the
zone shown.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from common.viewer_zone import COOKIE, zone_from_cookies

__all__ = ["COOKIE", "ViewerTimeZoneMiddleware", "viewer_zone"]


def viewer_zone(request: HttpRequest) -> zoneinfo.ZoneInfo | None:
    """The zone the viewer's browser reported, or ``None`` (use ``TIME_ZONE``): common/viewer_zone.py."""
    return zone_from_cookies(request.COOKIES)


class ViewerTimeZoneMiddleware:
    """Render each request's times in the viewer's zone (see the module's docstring)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        zone = viewer_zone(request)
        if zone is None:
            timezone.deactivate()
        else:
            timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            # Worker threads serve many viewers: never leave one viewer's zone behind.
            timezone.deactivate()
