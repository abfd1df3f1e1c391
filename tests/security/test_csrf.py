"""CSRF: every unsafe request made with a browser's session needs the token.

The HTML endpoints are enumerated from the URL configuration, so a page added later is
covered without touching this file. Scripts that POST with fetch() send the token of the
``<meta name="csrf-token">`` tag in base.html as ``X-CSRFToken``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RoutePattern

from sessions.choices import AgentState
from tests.desktop.conftest import logged_in
from tests.processes import ROOT

pytestmark = pytest.mark.django_db

SAMPLE = {"int": "1", "uuid": str(uuid.UUID(int=1)), "str": "x", "slug": "x", "path": "x"}
CONVERTER = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")


def walk(patterns, prefix: str = "") -> Iterator[str]:
    """Every routable path of ``patterns`` with sample values for its parameters (regex
    routes, all under /admin/ and the API's catch-all, are left to the explicit tests)."""
    for entry in patterns:
        if not isinstance(entry.pattern, RoutePattern):
            continue
        route = CONVERTER.sub(lambda match: SAMPLE[match.group("converter") or "str"], str(entry.pattern))
        if isinstance(entry, URLResolver):
            yield from walk(entry.url_patterns, prefix + route)
        elif isinstance(entry, URLPattern):
            yield "/" + prefix + route


def html_endpoints() -> list[str]:
    paths = sorted(set(walk(get_resolver().url_patterns)))
    return [path for path in paths if not path.startswith(("/api/", "/admin/"))]


ADMIN_ENDPOINTS = ["/admin/login/", "/admin/logout/", "/admin/auth/user/add/", "/admin/password_change/"]


def test_the_enumeration_finds_the_known_endpoints():
    endpoints = html_endpoints()

    for known in ("/login/", "/logout/", "/agent/login/", "/agent/state/", "/request/", "/healthz"):
        assert known in endpoints
    assert any(path.startswith("/console/links/") for path in endpoints)
    assert any(path.endswith("/end/") for path in endpoints)


def csrf_refusal(response) -> bool:
    return response.status_code == 403 and b"CSRF verification failed" in response.content


@pytest.mark.parametrize("who", ["anonymous", "staff", "agent"])
def test_every_html_endpoint_refuses_a_post_without_the_token(admin_user, agent, who):
    client = Client(enforce_csrf_checks=True)
    if who == "staff":
        client.force_login(admin_user)
    elif who == "agent":
        client.force_login(logged_in(agent, AgentState.READY).user)

    accepted = {
        path: response.status_code
        for path in html_endpoints() + ADMIN_ENDPOINTS
        if not csrf_refusal(response := client.post(path, {"reason": "x", "ready": "1"}))
    }

    assert accepted == {}


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_other_unsafe_methods_are_refused_too(admin_user, method):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)

    assert csrf_refusal(getattr(client, method)("/agent/state/"))
    assert csrf_refusal(getattr(client, method)("/login/"))


def meta_token(client: Client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.content.decode())
    assert match, f"no csrf-token meta tag on {path}"
    return match.group(1)


def test_the_meta_tag_token_sent_as_x_csrftoken_is_accepted(agent):
    # What a fetch() POST does: the token from the page's meta tag in the X-CSRFToken header.
    client = Client(enforce_csrf_checks=True)
    client.force_login(logged_in(agent).user)
    token = meta_token(client, "/agent/")

    without = client.post("/agent/state/", {"ready": "1"})
    with_header = client.post("/agent/state/", {"ready": "1"}, headers={"X-CSRFToken": token})
    with_wrong_header = client.post("/agent/state/", {"ready": "1"}, headers={"X-CSRFToken": "x" * 64})

    assert csrf_refusal(without)
    assert (with_header.status_code, with_header["Location"]) == (302, "/agent/")
    agent.refresh_from_db()
    assert agent.state == AgentState.READY
    assert csrf_refusal(with_wrong_header)


def test_the_form_token_is_accepted_on_the_log_in_form(admin_user):
    from tests.factories import PASSWORD

    client = Client(enforce_csrf_checks=True)
    token = meta_token(client, "/login/")

    response = client.post("/login/", {"username": "admin", "password": PASSWORD, "csrfmiddlewaretoken": token})

    assert (response.status_code, response["Location"]) == (302, "/")


def test_the_api_refuses_a_session_post_without_the_token_but_takes_a_token_client(admin_user):
    from rest_framework.test import APIClient

    from tests.factories import api_key

    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    script = APIClient(enforce_csrf_checks=True)
    script.credentials(HTTP_AUTHORIZATION=f"Token {api_key(admin_user)}")
    body = {"caller_name": "Ada", "topic": "Invoice"}

    refused = browser.post("/api/v1/sessions/", body, format="json")
    by_script = script.post("/api/v1/sessions/", body, format="json")

    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    # An API token is not an ambient browser credential: no CSRF token needed.
    assert by_script.status_code != 403


# --- Scripts ----------------------------------------------------------------------------------

UNSAFE_METHOD = re.compile(r"""method\s*:\s*["'`](POST|PUT|PATCH|DELETE)""", re.IGNORECASE)
XHR_UNSAFE = re.compile(r"""\.open\(\s*["'`](POST|PUT|PATCH|DELETE)""", re.IGNORECASE)


def test_every_script_that_sends_unsafe_requests_sends_the_meta_tag_token():
    # Coarse by design (options may be built apart from the fetch call): a script that
    # names an unsafe method reads the meta tag and sets X-CSRFToken. The browser test
    # (test_csp_browser.py) checks the requests the pages really send.
    scripts = sorted((ROOT / "static").rglob("*.js"))
    assert scripts
    offenders = [
        str(path.relative_to(ROOT))
        for path in scripts
        if (UNSAFE_METHOD.search(text := path.read_text()) or XHR_UNSAFE.search(text))
        and not ("X-CSRFToken" in text and "csrf-token" in text)
    ]

    assert offenders == []


def test_every_page_renders_the_token_for_scripts(admin_client):
    assert meta_token(admin_client, "/login/")
    assert meta_token(Client(), "/agent/login/")
