"""Every HTML page of the product, enumerated from the URL configuration.

A page added later is found without touching the tests: each route's parameters are filled
from ``SAMPLES`` (a parameter with no sample fails the enumeration with a message saying
which), and each path is opened as the user it is for (``viewer``). Regex routes (the Django
admin) and the API are left out: they have tests of their own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from itertools import product
from urllib.parse import urlencode, urlsplit

from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RoutePattern

from tests.pages.realistic import Installation

PARAMETER = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")
# Not pages; each has tests of its own (the icon's redirect: tests/test_favicon.py; the CSV
# exports: tests/console/test_exports.py).
LEFT_OUT = ("/api/", "/admin/", "/healthz", "/readyz", "/metrics", "/favicon.ico", "/console/export/")

# Who opens a path: the first matching prefix wins.
ANONYMOUS, STAFF, AGENT = "anonymous", "staff", "agent"
VIEWERS = (
    ("/agent/login/", ANONYMOUS),
    ("/agent/", AGENT),
    ("/request/", ANONYMOUS),
    ("/login/", ANONYMOUS),
    ("/password_reset/", ANONYMOUS),
    ("/reset/", ANONYMOUS),
    ("/", STAFF),
)

Samples = Callable[[Installation], list[str]]

# (path prefix, parameter name) -> the values to open the route with.
SAMPLES: dict[tuple[str, str], Samples] = {
    ("/console/wizards/", "run_id"): lambda data: [str(run.pk) for run in data.wizard_runs],
    # Each incident: routing-b's failure (sessions ended and adopted) and the Media Blender
    # link going down (sessions kept).
    ("/console/incidents/", "event_id"): lambda data: [str(pk) for pk in data.incident_ids()],
    # The agent's own sessions, in every state the agent can have them in.
    ("/agent/", "session_id"): lambda data: [str(s.pk) for s in data.sessions.values() if s.agent_id == data.agent.pk],
    # The caller's page is for any session, whatever became of it.
    ("/request/", "session_id"): lambda data: [str(s.pk) for s in data.sessions.values()],
    # POST-only actions: one row each is enough to see them refuse a GET.
    ("/console/sessions/", "session_id"): lambda data: [str(data.sessions["active"].pk)],
    ("/console/links/", "link_id"): lambda data: ["1"],
    ("/console/peers/", "peer_id"): lambda data: ["1"],
    ("/console/servers/", "server_id"): lambda data: ["1"],
    ("/console/alerts/", "alert_id"): lambda data: ["1"],
    ("/console/alerts/notifications/", "channel_id"): lambda data: ["1"],
    ("/console/agents/", "agent_id"): lambda data: [str(data.agent.pk)],
    ("/console/tokens/", "token_id"): lambda data: ["1"],
    ("/reset/", "uidb64"): lambda data: ["MQ"],
    ("/reset/", "token"): lambda data: ["set-password"],
}


def routes(patterns=None, prefix: str = "") -> Iterator[str]:
    """Every route of the URL configuration as ``/path/<converter:name>/`` text."""
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if not isinstance(entry.pattern, RoutePattern):
            continue
        if isinstance(entry, URLResolver):
            yield from routes(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield "/" + prefix + str(entry.pattern)


def _samples(route: str, name: str, data: Installation) -> list[str]:
    for (prefix, parameter), values in SAMPLES.items():
        if parameter == name and route.startswith(prefix):
            found = values(data)
            assert found, f"no {name} to open {route} with: the realistic data lacks one"
            return found
    raise AssertionError(f"{route}: no sample for <{name}>; add one to tests/pages/urls.py SAMPLES")


def _substitute(route: str, values: tuple[str, ...]) -> str:
    chosen = iter(values)
    return PARAMETER.sub(lambda _: next(chosen), route)


def fill(route: str, data: Installation) -> list[str]:
    """The route with every combination of its parameters' samples."""
    names = [match.group("name") for match in PARAMETER.finditer(route)]
    paths = []
    for values in product(*(_samples(route, name, data) for name in names)):
        paths.append(_substitute(route, values))
    return paths


def viewer(path: str) -> str:
    return next(who for prefix, who in VIEWERS if path.startswith(prefix))


@dataclass(frozen=True)
class Page:
    route: str
    path: str
    viewer: str


def pages(data: Installation) -> list[Page]:
    found = []
    for route in sorted(set(routes())):
        if route.startswith(LEFT_OUT):
            continue
        found += [Page(route=route, path=path, viewer=viewer(path)) for path in fill(route, data)]
    return found


class _Links(HTMLParser):
    """The same-page links and GET forms of a page: how its filters and pages are reached."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.choices: list[tuple[str, str]] = []  # (field, value) of the GET forms' controls
        self._in_get_form = False
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {key: value or "" for key, value in attrs}
        if tag == "a" and attr.get("href"):
            self.hrefs.append(attr["href"])
        elif tag == "form":
            self._in_get_form = attr.get("method", "get").lower() == "get"
        elif self._in_get_form and tag == "select":
            self._select = attr.get("name")
        elif self._in_get_form and tag == "option" and self._select:
            self.choices.append((self._select, attr.get("value", "")))
        elif self._in_get_form and tag == "input" and attr.get("type") in ("search", "text") and attr.get("name"):
            self.choices.append((attr["name"], "routing"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_get_form = False
        elif tag == "select":
            self._select = None


def variants(path: str, html: str) -> list[str]:
    """The page's own filters and pages: each option of its GET forms and every link back to
    the same path with a query string, plus out-of-range and malformed page numbers."""
    parser = _Links()
    parser.feed(html)
    found = {f"{path}?{urlencode({name: value})}" for name, value in parser.choices if value}
    for href in parser.hrefs:
        parts = urlsplit(href)
        if parts.query and parts.path in ("", path):
            found.add(f"{path}?{parts.query}")
    found |= {f"{path}?page=2", f"{path}?page=999", f"{path}?page=abc"}
    return sorted(found)
