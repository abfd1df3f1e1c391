"""POST /api/v1/sessions/: a caller's request, queued by the built-in director on the
least-loaded healthy routing server, or a 503 with Retry-After when there is none."""

from __future__ import annotations

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from failover.choices import AuditAction, Health, ServerRole
from failover.models import AuditEntry, Server
from sessions.choices import EndReason, SessionState
from sessions.models import CollaborationSession
from tests.factories import ServerFactory, SessionFactory, SkillGroupFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/sessions/"


def request_session(client: APIClient, **body: object):
    return client.post(URL, {"caller_name": "Ada Lovelace", **body}, format="json")


def monitored(name: str, health: Health, **kwargs: object) -> Server:
    """A server with a base_url (so the monitor probes it) at ``health``."""
    server = ServerFactory(name=name, base_url=f"http://{name}.example.test:8000", **kwargs)
    Server.objects.filter(pk=server.pk).update(health=health)
    return server


def open_sessions(server: Server, n: int) -> None:
    for _ in range(n):
        SessionFactory(server=server)


# --- The request ---------------------------------------------------------------------------


def test_a_request_is_queued_and_answered_201_with_the_session(
    admin_api, server, live_events, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = request_session(admin_api, caller_contact="ada@example.test", topic="Billing question")

    assert response.status_code == 201, response.content
    body = response.json()
    session = CollaborationSession.objects.get(pk=body["id"])
    assert (body["server_name"], body["state"], body["caller_name"]) == ("routing-a", "queued", "Ada Lovelace")
    assert (session.caller_contact, session.topic, session.state) == ("ada@example.test", "Billing question", "queued")
    assert body["queued_at"].endswith("Z")
    assert body["agent"] is None
    audit = AuditEntry.objects.get(action=AuditAction.SESSION_REQUESTED)
    assert (audit.actor_name, audit.object_id, audit.after["server"]) == ("user:admin", str(session.pk), "routing-a")
    (event,) = [e for e in live_events if e["type"] == "session.changed"]
    assert event["data"]["id"] == body["id"]
    assert event["data"]["state"] == "queued"
    assert event["data"]["server"] == Server.objects.get(name="routing-a").pk


@pytest.mark.parametrize("client_fixture", ["admin_api", "agent_api", "visitor_api"])
def test_any_logged_in_user_may_ask_for_a_session(request, server, client_fixture):
    client = request.getfixturevalue(client_fixture)

    assert request_session(client).status_code == 201


def test_an_anonymous_request_is_refused(anonymous_api, server):
    response = request_session(anonymous_api)

    assert response.status_code in (401, 403)
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    assert not CollaborationSession.objects.exists()


def test_a_user_who_may_ask_for_a_session_still_cannot_list_them(visitor_api, server):
    request_session(visitor_api)

    assert visitor_api.get(URL).status_code == 403


def test_a_skill_group_is_resolved_by_name_on_the_chosen_server(admin_api, server):
    ServerFactory(name="routing-b")  # same load, later by name: not chosen
    billing = SkillGroupFactory(server=server, name="Billing")

    response = request_session(admin_api, skill_group="Billing")

    assert response.status_code == 201
    assert (response.json()["skill_group"], response.json()["skill_group_name"]) == (billing.pk, "Billing")


def test_an_unknown_skill_group_is_a_400_and_queues_nothing(admin_api, server):
    # Only a server that cannot take callers has it (a routing server with it would get the caller).
    SkillGroupFactory(server=ServerFactory(name="routing-z", role=ServerRole.AGENT), name="Billing")

    response = request_session(admin_api, skill_group="Billing")

    assert response.status_code == 400
    assert response.json() == {"skill_group": ['Server routing-a has no skill group named "Billing".']}
    assert not CollaborationSession.objects.exists()


def test_an_empty_skill_group_means_any_agent(admin_api, server):
    response = request_session(admin_api, skill_group="")

    assert response.status_code == 201
    assert response.json()["skill_group"] is None


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, {"caller_name": ["This field is required."]}),
        ({"caller_name": "  "}, {"caller_name": ["This field may not be blank."]}),
        ({"caller_name": "x" * 101}, {"caller_name": ["Ensure this field has no more than 100 characters."]}),
        (
            {"caller_name": "Ada", "caller_contact": "x" * 201, "topic": "y" * 201},
            {
                "caller_contact": ["Ensure this field has no more than 200 characters."],
                "topic": ["Ensure this field has no more than 200 characters."],
            },
        ),
        ({"caller_name": ["Ada"]}, {"caller_name": ["Not a valid string."]}),
    ],
)
def test_a_bad_request_is_a_400_with_a_message_per_field(admin_api, server, body, errors):
    response = admin_api.post(URL, body, format="json")

    assert response.status_code == 400
    assert response.json() == errors
    assert not CollaborationSession.objects.exists()


def test_a_caller_name_of_exactly_100_characters_is_accepted(admin_api, server):
    assert request_session(admin_api, caller_name="x" * 100).status_code == 201


# --- The director's choice -----------------------------------------------------------------


def test_the_least_loaded_healthy_routing_server_is_chosen(admin_api):
    busy, quiet = ServerFactory(name="routing-a"), ServerFactory(name="routing-b")
    open_sessions(busy, 2)
    open_sessions(quiet, 1)
    # Ended sessions are no load.
    for _ in range(3):
        SessionFactory(
            server=quiet, state=SessionState.ENDED, end_reason=EndReason.AGENT_ENDED, ended_at=timezone.now()
        )

    response = request_session(admin_api)

    assert response.json()["server_name"] == "routing-b"


def test_consecutive_requests_spread_over_the_routing_servers(admin_api):
    ServerFactory(name="routing-a")
    ServerFactory(name="routing-b")

    names = [request_session(admin_api).json()["server_name"] for _ in range(4)]

    assert names == ["routing-a", "routing-b", "routing-a", "routing-b"]


def test_an_agent_role_server_is_never_chosen(admin_api):
    routing = ServerFactory(name="routing-b")
    open_sessions(routing, 5)
    ServerFactory(name="agents-a", role=ServerRole.AGENT)

    response = request_session(admin_api)

    assert response.json()["server_name"] == "routing-b"


def test_a_monitored_server_that_is_down_is_skipped(admin_api):
    monitored("routing-a", Health.DOWN)
    survivor = monitored("routing-b", Health.UP)
    open_sessions(survivor, 3)

    response = request_session(admin_api)

    assert response.json()["server_name"] == "routing-b"


def test_a_monitored_server_not_yet_probed_is_skipped(admin_api):
    monitored("routing-a", Health.UNKNOWN)
    ServerFactory(name="routing-b")

    assert request_session(admin_api).json()["server_name"] == "routing-b"


def test_an_unmonitored_server_counts_as_healthy(admin_api):
    unmonitored = ServerFactory(name="single-node")
    Server.objects.filter(pk=unmonitored.pk).update(health=Health.UNKNOWN)

    response = request_session(admin_api)

    assert response.status_code == 201
    assert response.json()["server_name"] == "single-node"


def test_no_healthy_routing_server_is_a_503_with_retry_after(admin_api):
    monitored("routing-a", Health.DOWN)
    monitored("routing-b", Health.UNKNOWN)
    ServerFactory(name="agents-a", role=ServerRole.AGENT)

    response = request_session(admin_api)

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"detail": "No healthy routing server can take the request."}
    assert not CollaborationSession.objects.exists()
    assert not AuditEntry.objects.filter(action=AuditAction.SESSION_REQUESTED).exists()


def test_a_503_is_answered_before_the_skill_group_is_looked_at(admin_api):
    monitored("routing-a", Health.DOWN)

    response = request_session(admin_api, skill_group="Nobody has this")

    assert response.status_code == 503


def test_an_agents_own_server_does_not_decide_where_its_request_goes(agent_api, agent):
    # The agent's server (routing-a) is the busier one; the director looks at load only.
    open_sessions(agent.server, 2)
    ServerFactory(name="routing-b")

    response = request_session(agent_api)

    assert response.json()["server_name"] == "routing-b"


def test_the_schema_documents_the_request_and_its_503(admin_client):
    schema = admin_client.get("/api/v1/schema/", {"format": "json"}).json()
    operation = schema["paths"]["/api/v1/sessions/"]["post"]

    assert set(operation["responses"]) >= {"201", "400", "403", "503"}
    request_body = schema["components"]["schemas"]["SessionRequest"]
    assert request_body["required"] == ["caller_name"]
    assert set(request_body["properties"]) == {"caller_name", "caller_contact", "topic", "skill_group"}
