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
from functools import lru_cache
from urllib.parse import unquote

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

COOKIE = "tz"


@lru_cache(maxsize=1)
def known_zones() -> frozenset[str]:
    """The IANA zone names this machine knows (read once: ``available_timezones`` walks the tz database)."""
    return frozenset(zoneinfo.available_timezones())


def viewer_zone(request: HttpRequest) -> zoneinfo.ZoneInfo | None:
    """The zone the viewer's browser reported, or ``None`` (use ``TIME_ZONE``).

    Only a name from the tz database is accepted: the cookie is the client's to write, and
    ``ZoneInfo`` would otherwise be handed arbitrary text.
    """
    name = unquote(request.COOKIES.get(COOKIE, ""))  # "Asia%2FKolkata" from other writers
    if not name or len(name) > 64 or name not in known_zones():
        return None
    return zoneinfo.ZoneInfo(name)


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
