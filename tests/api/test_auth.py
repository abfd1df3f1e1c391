"""Who may call the REST API: anonymous nobody, staff everything, agents their desktop only."""

from __future__ import annotations

import re
import uuid
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from tests.factories import PASSWORD, AgentFactory, UserFactory

pytestmark = pytest.mark.django_db

CONSOLE_ENDPOINTS = [
    "/api/v1/status/",
    "/api/v1/servers/",
    "/api/v1/servers/1/",
    "/api/v1/peers/",
    "/api/v1/peers/1/",
    "/api/v1/links/",
    "/api/v1/links/1/",
    "/api/v1/events/",
    "/api/v1/events/1/",
    "/api/v1/audit/",
    "/api/v1/audit/1/",
]
AGENT_ENDPOINTS = [
    "/api/v1/agents/",
    "/api/v1/agents/1/",
    "/api/v1/sessions/",
    f"/api/v1/sessions/{uuid.uuid4()}/",
]
DOCUMENTATION_ENDPOINTS = ["/api/v1/schema/", "/api/v1/docs/"]
EVERY_ENDPOINT = CONSOLE_ENDPOINTS + AGENT_ENDPOINTS + DOCUMENTATION_ENDPOINTS


def _token_from_command(username: str) -> str:
    """Run the real ``create_api_token`` command, as an operator would, and read its output."""
    out = StringIO()
    call_command(
        "create_api_token", username, "--name", f"script-{uuid.uuid4().hex[:6]}", stdout=out, stderr=StringIO()
    )
    match = re.fullmatch(r"(ca_[\w-]{40})\n", out.getvalue())
    assert match, out.getvalue()
    return match.group(1)


@pytest.mark.parametrize("url", EVERY_ENDPOINT)
def test_anonymous_requests_are_refused_with_a_json_message(anonymous_api, url):
    response = anonymous_api.get(url)

    assert response.status_code in (401, 403)
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"detail": "Authentication credentials were not provided."}


def test_an_anonymous_browser_is_refused_without_a_server_error(anonymous_client):
    # UNAUTHENTICATED_USER is None, so the browsable API renders with request.user None.
    response = anonymous_client.get("/api/v1/servers/", HTTP_ACCEPT="text/html")

    assert response.status_code == 403
    assert b"Authentication credentials were not provided." in response.content


def test_a_token_made_by_create_api_token_authenticates_api_requests(admin_user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {_token_from_command(admin_user.username)}")

    response = client.get("/api/v1/status/")

    assert response.status_code == 200
    assert "servers" in response.json()


def test_an_agent_token_reaches_only_the_agents_endpoints(agent):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {_token_from_command(agent.user.username)}")

    assert client.get("/api/v1/sessions/").status_code == 200
    assert client.get("/api/v1/status/").status_code == 403


def test_an_unknown_token_is_refused_with_a_json_message(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    response = client.get("/api/v1/status/")

    assert response.status_code in (401, 403)
    assert response.json() == {"detail": "Invalid token."}


def test_a_token_of_a_deactivated_user_is_refused_with_a_json_message(admin_user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {_token_from_command(admin_user.username)}")
    admin_user.is_active = False
    admin_user.save(update_fields=["is_active"])

    response = client.get("/api/v1/status/")

    assert response.status_code in (401, 403)
    assert response.json() == {"detail": "User inactive or deleted."}


def test_a_token_request_acts_as_the_tokens_own_user(admin_user, server):
    from failover.choices import AuditAction
    from failover.models import AuditEntry

    other = UserFactory(username="someone-else", is_staff=True)
    _token_from_command(other.username)  # another user's token exists too
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {_token_from_command(admin_user.username)}")

    response = client.post("/api/v1/sessions/", {"caller_name": "Ada"}, format="json")

    assert response.status_code == 201
    entry = AuditEntry.objects.get(action=AuditAction.SESSION_REQUESTED)
    assert entry.actor_name == f"user:{admin_user.username}"


def test_a_session_log_in_authenticates_api_requests(admin_user):
    client = Client()
    assert client.login(username=admin_user.username, password=PASSWORD)

    response = client.get("/api/v1/status/")

    assert response.status_code == 200


@pytest.mark.parametrize("url", CONSOLE_ENDPOINTS)
def test_an_agent_is_refused_the_administrators_console(agent_api, url):
    response = agent_api.get(url)

    assert response.status_code == 403
    assert response.json() == {
        "detail": "Your role does not allow this (it needs: view the administration desktop and read the api)."
    }


@pytest.mark.parametrize("url", ["/api/v1/sessions/", "/api/v1/agents/"])
def test_an_agent_may_use_its_desktop_endpoints(agent_api, url):
    assert agent_api.get(url).status_code == 200


@pytest.mark.parametrize("url", CONSOLE_ENDPOINTS + AGENT_ENDPOINTS)
def test_a_user_who_is_neither_staff_nor_agent_is_refused(db, url):
    client = APIClient()
    client.force_authenticate(UserFactory(username="visitor"))

    response = client.get(url)

    assert response.status_code == 403


def test_a_disabled_agent_is_refused_its_sessions(server):
    disabled = AgentFactory(user__username="former-agent", server=server, enabled=False)
    client = APIClient()
    client.force_authenticate(disabled.user)

    response = client.get("/api/v1/sessions/")

    assert response.status_code == 403
    assert response.json() == {"detail": "Only agents and users whose role allows it may use this endpoint."}


def test_the_resources_are_read_only_for_now(admin_api):
    response = admin_api.post("/api/v1/servers/", {"name": "new"}, format="json")

    assert response.status_code == 405
    assert response.json() == {"detail": 'Method "POST" not allowed.'}
