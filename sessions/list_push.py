"""The agent's open-sessions list, rendered on the agent's own socket with each change.

The Agent desktop used to fetch its sessions list after every ``session.changed`` it
heard (``static/agent/desktop.js``): one HTTP request per change, 25 ms after the event,
waiting for the node's HTTP threads. With a thousand desktops open that fetch was most of
the time between a change and the agent seeing it (docs/performance.md, issue 18 point
4). A desktop that asks for it (``/ws/agent/?push=sessions``) now gets the list with the
event instead: the consumer renders the same template as the fetch
(``agent/_sessions.html``, same context) for the same agent, in the zone of the socket's
browser (its ``tz`` cookie) and with a CSRF token for the socket's own CSRF cookie (the
list's End buttons are forms), and sends it as ``html.sessions`` in the event.

The consumer renders in the thread where it checks, as for every event it forwards, that
the user is still an enabled agent (sessions/consumers.py): one hop per event, as before.
A CSRF cookie this cannot use (absent, not what Django writes) means no push: the event
goes without the list and the desktop fetches it, as before (that answer sets the cookie).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from django.conf import settings
from django.http import HttpRequest
from django.middleware.csrf import get_token
from django.template.loader import render_to_string
from django.utils import timezone

from common.viewer_zone import zone_from_cookies
from sessions.models import Agent
from sessions.views.agent import sessions_context

PUSH_PARAM = "push"
SESSIONS = "sessions"  # the one list that can be pushed: ?push=sessions
TEMPLATE = "agent/_sessions.html"
# What Django (4.1 and later) writes in the CSRF cookie: the unmasked 32-character secret.
# Anything else (an old masked cookie, a forged one) is left to the fetch, whose middleware
# replaces it.
CSRF_SECRET = re.compile(r"[a-zA-Z0-9]{32}")


def csrf_secret(cookies: Mapping[str, str]) -> str | None:
    """The socket's CSRF secret, or None (then nothing is pushed)."""
    secret = cookies.get(settings.CSRF_COOKIE_NAME, "")
    return secret if CSRF_SECRET.fullmatch(secret) else None


def sessions_list_html(agent: Agent, cookies: Mapping[str, str]) -> str | None:
    """``agent``'s open-sessions list as ``/agent/partials/sessions/`` renders it for the
    browser that sent ``cookies``; None when that browser's CSRF cookie cannot be used."""
    secret = csrf_secret(cookies)
    if secret is None:
        return None
    request = HttpRequest()
    request.META["CSRF_COOKIE"] = secret  # what the CSRF middleware sets from the cookie
    context = sessions_context(agent) | {"csrf_token": get_token(request)}
    with timezone.override(zone_from_cookies(cookies)):  # None: the installation's TIME_ZONE
        return render_to_string(TEMPLATE, context)
