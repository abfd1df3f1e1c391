"""Who may do what, proved for every unsafe URL and API operation and every role.

Generated, not listed: the console's URLs come from the URL resolver and the API's
operations from the OpenAPI schema the project serves (drf-spectacular's generator, with
``common.api_schema``), so a new endpoint is walked by this test the day it is added. Each
must declare its permission (``common.permissions.requires``, ``console.pages.
requires_permission``) or be in an allow-list below with its reason; an undeclared one
fails :func:`test_every_endpoint_declares_its_permission`.

For each endpoint and each caller (anonymous, a user without a role, an agent, a viewer, a
supervisor, an administrator, a superuser): allowed ⇔ the caller holds the declared
permission. Refused is 401/403 or the redirect to the log-in page; allowed is anything else
(the requests name objects that do not exist, so an allowed caller gets 404, 400, 405...:
the permission is checked before anything is looked up, and nothing changes).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from drf_spectacular.generators import SchemaGenerator
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from common import roles
from common.permissions import REQUIRED_PERMISSION, HasRolePermission, requires
from tests.factories import PASSWORD, AgentFactory, UserFactory, role_user

pytestmark = pytest.mark.django_db

ABSENT_ID = "999999"
ABSENT_UUID = str(uuid.UUID(int=1))
UNSAFE = ("post", "put", "patch", "delete")

# --- The callers ------------------------------------------------------------------------

CALLERS = ("anonymous", "no-role", "agent", "viewer", "supervisor", "administrator", "superuser")
ROLE_OF = {"viewer": roles.VIEWER, "supervisor": roles.SUPERVISOR, "administrator": roles.ADMINISTRATOR}


def held(caller: str) -> set[roles.Permission]:
    if caller == "superuser":
        return set(roles.PERMISSIONS)
    role = ROLE_OF.get(caller)
    return set(role.permissions) if role else set()


def make_user(caller: str) -> Any:
    if caller == "anonymous":
        return None
    if caller == "agent":
        return AgentFactory(user__username="agent-under-test").user
    if caller == "superuser":
        return UserFactory(username="root-under-test", is_superuser=True)
    if caller == "no-role":
        return UserFactory(username="nobody-under-test")
    return role_user(ROLE_OF[caller], username=f"{caller}-under-test")


# --- The allow-lists: endpoints that do not follow "holders of one permission" -------------

# Console URLs (outside /api/ and /admin/) that declare no permission, by URL name or namespace.
CONSOLE_UNDECLARED = {
    "healthz": "load balancers' probe, anonymous by design",
    "readyz": "load balancers' probe, anonymous by design",
    "metrics": "its own check: METRICS_ALLOWED_IPS, a bearer token, or view_desktop (collabadmin/metrics.py)",
    "favicon": "a static file",
    "login": "the log-in itself (refuses users without view_desktop: test_the_console_log_in_...)",
    "logout": "anyone signed in may sign out",
    "password_change": "Django's own account page, for any signed-in user's own password",
    "password_change_done": "Django's own account page",
    "password_reset": "Django's own account page (anonymous by design)",
    "password_reset_done": "Django's own account page",
    "password_reset_confirm": "Django's own account page (the e-mailed token is the credential)",
    "password_reset_complete": "Django's own account page",
    "agent:*": "the Agent desktop: enabled agents on their own rows (sessions/views/access.py)",
    "caller:*": "the caller's form: anonymous by design, rate-limited per client address",
}

# API operations whose rule is not "holders of the declared permission".
API_EXCEPTIONS: dict[tuple[str, str], tuple[str, Callable[[str], bool]]] = {
    ("post", "/api/v1/sessions/"): (
        "a caller's request: any authenticated user (scripts with a token)",
        lambda caller: caller != "anonymous",
    ),
    ("post", "/api/v1/sessions/{id}/end/"): (
        "end_sessions, or an agent on its own sessions (another's is a 404)",
        lambda caller: caller == "agent" or roles.END_SESSIONS in held(caller),
    ),
}


# What each write needs, as the roles say (docs/operations.md, "Roles"): pinned
# here so that a declaration changed by mistake (a switchover for viewers) fails too.
PINNED_API = {
    ("post", "/api/v1/alerts/{id}/acknowledge/"): roles.HANDLE_ALERTS,
    ("post", "/api/v1/links/{id}/switchover/"): roles.SWITCH_OVER_LINKS,
    ("post", "/api/v1/notification-channels/{id}/test/"): roles.MANAGE_NOTIFICATIONS,
    ("post", "/api/v1/peers/{id}/maintenance/"): roles.SET_PEER_MAINTENANCE,
    ("patch", "/api/v1/policy/"): roles.SET_FAILOVER_POLICY,
    ("post", "/api/v1/servers/{id}/drain/"): roles.DRAIN_SERVERS,
    ("post", "/api/v1/servers/{id}/silence/"): roles.HANDLE_ALERTS,
    ("post", "/api/v1/servers/{id}/undrain/"): roles.DRAIN_SERVERS,
    ("post", "/api/v1/servers/{id}/unsilence/"): roles.HANDLE_ALERTS,
    ("post", "/api/v1/sessions/{id}/end/"): roles.END_SESSIONS,
    ("post", "/api/v1/sync-runs/"): roles.VERIFY_AND_SYNC,
    # Everyone with a role manages their own tokens; another user's needs manage_api_tokens,
    # which the service checks (tests/security/test_api_tokens.py).
    ("post", "/api/v1/tokens/"): roles.VIEW_DESKTOP,
    ("post", "/api/v1/tokens/{id}/revoke/"): roles.VIEW_DESKTOP,
    ("post", "/api/v1/sync-runs/{id}/approve/"): roles.VERIFY_AND_SYNC,
    ("post", "/api/v1/sync-runs/{id}/sync/"): roles.VERIFY_AND_SYNC,
    ("post", "/api/v1/wizards/"): roles.RUN_WIZARDS,
}
PINNED_CONSOLE = {  # every other declared console URL is a page: view_desktop
    "console-wizard-start": roles.RUN_WIZARDS,
    "console-sync-verify": roles.VERIFY_AND_SYNC,
    "console-sync-apply": roles.VERIFY_AND_SYNC,
    "console-server-drain": roles.DRAIN_SERVERS,
    "console-link-switchover": roles.SWITCH_OVER_LINKS,
    "console-peer-maintenance": roles.SET_PEER_MAINTENANCE,
    "console-alert-acknowledge": roles.HANDLE_ALERTS,
    "console-notification-test": roles.MANAGE_NOTIFICATIONS,
    "console-server-silence": roles.HANDLE_ALERTS,
    "console-server-unsilence": roles.HANDLE_ALERTS,
    "console-session-end": roles.END_SESSIONS,
    "console-agent-logout": roles.LOG_OUT_AGENTS,
}


# --- What the resolver and the schema say -------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    method: str
    url: str  # with absent ids filled in
    key: str  # what the allow-list and the test ids name
    permission: roles.Permission | None


def _walk(patterns: list, prefix: str = "", namespace: str = "") -> Iterator[tuple[str, str, Any]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern), inner)
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), f"{namespace}{pattern.name}", pattern.callback


def _fill_route(route: str) -> str:
    route = re.sub(r"<uuid:\w+>", ABSENT_UUID, route)
    return "/" + re.sub(r"<(?:int:)?\w+>", ABSENT_ID, route)


@cache
def console_endpoints() -> tuple[Endpoint, ...]:
    found = []
    for route, name, view in _walk(get_resolver().url_patterns):
        if route.startswith(("api/v1/", "admin/")):
            continue
        permission = getattr(view, REQUIRED_PERMISSION, None)
        found.append(Endpoint("post", _fill_route(route), name, permission))
    return tuple(found)


def _console_allowed_undeclared(endpoint: Endpoint) -> bool:
    namespace = endpoint.key.split(":")[0] + ":*" if ":" in endpoint.key else None
    return endpoint.key in CONSOLE_UNDECLARED or namespace in CONSOLE_UNDECLARED


@cache
def api_schema() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def _fill_path(path: str, operation: dict[str, Any]) -> str:
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "path":
            value = ABSENT_UUID if parameter.get("schema", {}).get("format") == "uuid" else ABSENT_ID
            path = path.replace("{" + parameter["name"] + "}", value)
    return path


def handler_permission(view_class: type, handler_name: str) -> roles.Permission | None:
    """What HasRolePermission reads (common.permissions.declared_permission), from the class."""
    handler = getattr(view_class, handler_name, None)
    return getattr(handler, REQUIRED_PERMISSION, None) or getattr(view_class, REQUIRED_PERMISSION, None)


@cache
def api_endpoints() -> tuple[Endpoint, ...]:
    found = []
    for path, operations in api_schema()["paths"].items():
        for method, operation in operations.items():
            if method not in UNSAFE:
                continue
            url = _fill_path(path, operation)
            callback = resolve(url).func
            actions = getattr(callback, "actions", None) or {}
            handler_name = actions.get(method, method)
            found.append(Endpoint(method, url, path, handler_permission(callback.cls, handler_name)))
    return tuple(found)


# --- The tests ----------------------------------------------------------------------------


def test_the_walk_finds_the_endpoints_it_must() -> None:
    """Guards the generators themselves: an empty walk would prove nothing."""
    api = {(endpoint.method, endpoint.key) for endpoint in api_endpoints()}
    assert ("post", "/api/v1/links/{id}/switchover/") in api
    assert ("patch", "/api/v1/policy/") in api
    assert len(api) >= 15
    console = {endpoint.key for endpoint in console_endpoints()}
    assert {"console-link-switchover", "console-session-end", "console-agent-logout", "caller:request"} <= console


def test_every_endpoint_declares_its_permission() -> None:
    undeclared = [
        f"{endpoint.method.upper()} {endpoint.key}"
        for endpoint in api_endpoints()
        if endpoint.permission is None and (endpoint.method, endpoint.key) not in API_EXCEPTIONS
    ]
    undeclared += [
        endpoint.url
        for endpoint in console_endpoints()
        if endpoint.permission is None and not _console_allowed_undeclared(endpoint)
    ]
    assert undeclared == [], "declare a permission (requires / requires_permission) or allow-list it with a reason"


def test_each_write_declares_the_permission_its_role_gives() -> None:
    declared_api = {
        (endpoint.method, endpoint.key): endpoint.permission for endpoint in api_endpoints() if endpoint.permission
    }
    assert declared_api == PINNED_API
    declared_console = {
        endpoint.key: endpoint.permission
        for endpoint in console_endpoints()
        if endpoint.permission and endpoint.permission != roles.VIEW_DESKTOP
    }
    assert declared_console == PINNED_CONSOLE


def test_the_allow_lists_name_only_endpoints_that_exist() -> None:
    api = {(endpoint.method, endpoint.key) for endpoint in api_endpoints()}
    assert set(API_EXCEPTIONS) <= api
    names = {endpoint.key for endpoint in console_endpoints()}
    namespaces = {name.split(":")[0] + ":*" for name in names if ":" in name}
    assert set(CONSOLE_UNDECLARED) <= names | namespaces


def refused(response: Any) -> bool:
    if response.status_code in (401, 403):
        return True
    return response.status_code == 302 and response["Location"].startswith("/login/")


def _cases(endpoints: Callable[[], tuple[Endpoint, ...]], declared_only: bool) -> list[Any]:
    return [
        pytest.param(endpoint, caller, id=f"{endpoint.method}-{endpoint.key}-{caller}")
        for endpoint in endpoints()
        if endpoint.permission is not None or not declared_only
        for caller in CALLERS
    ]


@pytest.mark.parametrize(("endpoint", "caller"), _cases(api_endpoints, declared_only=False))
def test_an_api_operation_is_allowed_exactly_to_the_holders_of_its_permission(endpoint: Endpoint, caller: str) -> None:
    client = APIClient()
    user = make_user(caller)
    if user is not None:
        client.force_authenticate(user)

    response = getattr(client, endpoint.method)(endpoint.url, {}, format="json")

    rule = API_EXCEPTIONS.get((endpoint.method, endpoint.key))
    expected = rule[1](caller) if rule else endpoint.permission in held(caller)
    assert not refused(response) == expected, (response.status_code, response.content[:300])


@pytest.mark.parametrize(("endpoint", "caller"), _cases(console_endpoints, declared_only=True))
def test_a_console_post_is_allowed_exactly_to_the_holders_of_its_permission(endpoint: Endpoint, caller: str) -> None:
    client = Client()
    user = make_user(caller)
    if user is not None:
        client.force_login(user)

    response = client.post(endpoint.url, {"reason": "role test"})

    assert not refused(response) == (endpoint.permission in held(caller)), response.status_code


@pytest.mark.parametrize("caller", CALLERS)
def test_the_django_admin_is_for_superusers_only(caller: str) -> None:
    client = Client()
    user = make_user(caller)
    if user is not None:
        user.is_staff = True  # is_staff alone opens nothing any more
        user.save()
        client.force_login(user)

    response = client.get("/admin/")

    assert (response.status_code == 200) == (caller == "superuser")


# --- The rule for what is not declared ----------------------------------------------------


class Undeclared(APIView):
    """A new endpoint whose author forgot ``requires``."""

    def get(self, request: Request) -> Response:
        return Response({})

    def post(self, request: Request) -> Response:
        return Response({})


@pytest.mark.parametrize("caller", CALLERS)
def test_an_undeclared_write_is_for_superusers_and_an_undeclared_read_for_viewers(caller: str) -> None:
    factory = APIRequestFactory()
    user = make_user(caller)
    answers = {}
    for method in ("get", "post"):
        request = getattr(factory, method)("/undeclared/", {}, format="json")
        if user is not None:
            force_authenticate(request, user)
        answers[method] = Undeclared.as_view()(request).status_code

    assert (answers["get"] == 200) == (roles.VIEW_DESKTOP in held(caller))
    assert (answers["post"] == 200) == (caller == "superuser")


def test_the_walk_names_an_undeclared_write() -> None:
    """What test_every_endpoint_declares_its_permission sees of a view without ``requires``."""
    assert handler_permission(Undeclared, "post") is None
    assert HasRolePermission in [type(permission) for permission in Undeclared().get_permissions()]

    class Declared(Undeclared):
        @requires(roles.DRAIN_SERVERS)
        def post(self, request: Request) -> Response:
            return Response({})

    assert handler_permission(Declared, "post") is roles.DRAIN_SERVERS
    assert handler_permission(Declared, "get") is None


def test_the_console_log_in_refuses_a_user_without_a_role() -> None:
    for caller in ("no-role", "agent", "viewer"):
        make_user(caller)
    client = Client()

    refused_page = client.post("/login/", {"username": "nobody-under-test", "password": PASSWORD})
    agent_page = client.post("/login/", {"username": "agent-under-test", "password": PASSWORD})
    viewer = client.post("/login/", {"username": "viewer-under-test", "password": PASSWORD})

    for page in (refused_page, agent_page):
        assert page.status_code == 200
        assert "has no role on the Administration desktop" in page.content.decode()
    assert viewer.status_code == 302


def test_the_403_page_names_the_missing_permission() -> None:
    client = Client()
    client.force_login(make_user("viewer"))

    page = client.post(f"/console/links/{ABSENT_ID}/switchover/", {"reason": "x"})

    assert page.status_code == 403
    assert "it needs: switch links over" in page.content.decode()
    assert 'href="/"' in page.content.decode()
