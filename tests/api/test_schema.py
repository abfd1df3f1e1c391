"""The OpenAPI schema and its docs page: generated without warnings, served to users only."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db

DOCUMENTED_PATHS = [
    "/api/v1/status/",
    "/api/v1/servers/",
    "/api/v1/servers/{id}/",
    "/api/v1/peers/",
    "/api/v1/links/",
    "/api/v1/agents/",
    "/api/v1/sessions/",
    "/api/v1/sessions/{id}/",
    "/api/v1/events/",
    "/api/v1/audit/",
]


def test_the_schema_generates_without_warnings_and_validates(tmp_path: Path):
    # The same command CI and the brief use; --fail-on-warn turns any warning into an error.
    target = tmp_path / "schema.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))

    assert "/api/v1/status/" in target.read_text()


@pytest.mark.parametrize("client_fixture", ["admin_client", "agent_client"])
def test_the_schema_endpoint_answers_a_logged_in_user(request, client_fixture):
    client = request.getfixturevalue(client_fixture)

    response = client.get("/api/v1/schema/", {"format": "json"})

    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)
    for path in DOCUMENTED_PATHS:
        assert path in schema["paths"]


def test_the_schema_documents_the_status_snapshot_shape(admin_client):
    schemas = admin_client.get("/api/v1/schema/", {"format": "json"}).json()["components"]["schemas"]

    assert set(schemas["StatusSnapshot"]["properties"]) == {"generated_at", "servers", "session_counts", "alerts"}
    assert "active_peer" in schemas["StatusLink"]["properties"]
    assert set(schemas["SessionCounts"]["properties"]) == {"queued", "in_transit", "active", "ended"}


def test_the_schema_documents_the_session_filters(admin_client):
    paths = admin_client.get("/api/v1/schema/", {"format": "json"}).json()["paths"]

    names = {parameter["name"] for parameter in paths["/api/v1/sessions/"]["get"]["parameters"]}

    assert {"state", "server", "agent", "limit", "offset"} <= names


def test_the_docs_page_answers_a_logged_in_user(admin_client):
    response = admin_client.get("/api/v1/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    # Swagger UI's start-up script is a same-origin file (no inline script, for the CSP).
    assert b'<script src="/api/v1/docs/?script="></script>' in response.content
    script = admin_client.get("/api/v1/docs/", {"script": ""})
    assert script.status_code == 200
    assert b"/api/v1/schema/" in script.content
