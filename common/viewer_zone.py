"""The viewer's time zone, as its browser reports it in the ``tz`` cookie.

``static/js/timezone.js`` (loaded by every page) keeps the cookie set to the browser's IANA
zone name; the pages (collabadmin/timezones.py) and what the sockets render themselves
(sessions/list_push.py) read it here. Only a name from the tz database is accepted: the
cookie is the client's to write, and ``ZoneInfo`` would otherwise be handed arbitrary text.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from functools import lru_cache
from urllib.parse import unquote

COOKIE = "tz"


@lru_cache(maxsize=1)
def known_zones() -> frozenset[str]:
    """The IANA zone names this machine knows (read once: ``available_timezones`` walks the tz database)."""
    return frozenset(zoneinfo.available_timezones())


def zone_from_cookies(cookies: Mapping[str, str]) -> zoneinfo.ZoneInfo | None:
    """The zone the viewer's browser reported, or ``None`` (use ``TIME_ZONE``)."""
    name = unquote(cookies.get(COOKIE, ""))  # "Asia%2FKolkata" from other writers
    if not name or len(name) > 64 or name not in known_zones():
        return None
    return zoneinfo.ZoneInfo(name)
