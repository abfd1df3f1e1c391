"""The caller's /request/ form: anonymous, CSRF-protected, clear errors, 503 with
Retry-After when no routing server is healthy, and the "you are in the queue" page."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from failover.choices import AuditAction, Health, ServerRole
from failover.models import AuditEntry, Server
from sessions.choices import EndReason, SessionState
from sessions.models import CollaborationSession
from sessions.services.director import RETRY_AFTER_SECONDS
from tests.desktop.conftest import logged_in, routed_session
from tests.factories import ServerFactory, SessionFactory, SkillGroupFactory

pytestmark = pytest.mark.django_db

URL = "/request/"


def text(response) -> str:
    return response.content.decode()


def request_session(client: Client, **fields: str):
    return client.post(URL, {"caller_name": "Ada Lovelace", **fields})


def all_servers_down() -> None:
    Server.objects.update(base_url="http://routing.example.test:8000", health=Health.DOWN)


# --- Asking for a session -------------------------------------------------------------------------


def test_an_anonymous_caller_sees_the_form_with_the_skill_groups_of_routing_servers(anonymous_client, server):
    SkillGroupFactory(server=server, name="Billing")
    SkillGroupFactory(server=ServerFactory(name="routing-b"), name="Billing")  # one entry per name
    SkillGroupFactory(server=ServerFactory(name="agent-only", role=ServerRole.AGENT), name="Agent server only")

    response = anonymous_client.get(URL)

    assert response.status_code == 200
    page = text(response)
    assert page.count('<option value="Billing">Billing</option>') == 1
    assert "Agent server only" not in page
    assert 'name="csrfmiddlewaretoken"' in page


def test_an_anonymous_caller_is_queued_and_sent_to_the_queue_page(anonymous_client, server):
    SkillGroupFactory(server=server, name="Billing")

    response = request_session(
        anonymous_client, caller_contact="ada@example.test", topic="Invoice 42", skill_group="Billing"
    )

    session = CollaborationSession.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/request/{session.pk}/"
    assert (session.caller_name, session.caller_contact, session.topic) == (
        "Ada Lovelace",
        "ada@example.test",
        "Invoice 42",
    )
    assert (session.state, session.server, session.skill_group.name) == (SessionState.QUEUED, server, "Billing")
    assert AuditEntry.objects.get(action=AuditAction.SESSION_REQUESTED).actor_name == "caller:web"


def test_the_request_form_is_refused_without_a_csrf_token(server):
    response = request_session(Client(enforce_csrf_checks=True))

    assert response.status_code == 403
    assert not CollaborationSession.objects.exists()


def test_the_request_form_passes_with_the_token_it_carries(server):
    client = Client(enforce_csrf_checks=True)
    client.get(URL)

    response = request_session(client, csrfmiddlewaretoken=client.cookies["csrftoken"].value)

    assert response.status_code == 302


# --- Bad input: the form again, with its errors, and a 400 -------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"caller_name": ""}, "caller_name", "This field is required."),
        ({"caller_name": "   "}, "caller_name", "This field is required."),
        ({"caller_name": "x" * 101}, "caller_name", "at most 100 characters"),
        ({"topic": "y" * 201}, "topic", "at most 200 characters"),
        ({"skill_group": "No such group"}, "skill_group", "Select a valid choice."),
    ],
)
def test_bad_input_re_renders_the_form_with_the_field_error_and_a_400(anonymous_client, server, fields, field, message):
    response = request_session(anonymous_client, **fields)

    assert response.status_code == 400
    assert message in text(response)
    assert field in response.context["form"].errors
    assert 'aria-invalid="true"' in text(response)
    assert not CollaborationSession.objects.exists()


def test_a_skill_group_only_a_busier_server_has_sends_the_caller_there(anonymous_client, server):
    busy = ServerFactory(name="routing-b")
    SkillGroupFactory(server=busy, name="Spanish")
    SessionFactory(server=busy)

    response = request_session(anonymous_client, skill_group="Spanish")

    assert response.status_code == 302
    created = CollaborationSession.objects.get(caller_name="Ada Lovelace")
    assert (created.server, created.skill_group.name) == (busy, "Spanish")


def test_a_skill_group_no_healthy_server_has_is_a_field_error(anonymous_client, server):
    # Offered because routing-b has it, but routing-b is down: only routing-a can take it.
    down = ServerFactory(name="routing-b", base_url="http://127.0.0.1:1")
    Server.objects.filter(pk=down.pk).update(health=Health.DOWN)
    SkillGroupFactory(server=down, name="Spanish")

    response = request_session(anonymous_client, skill_group="Spanish")

    assert response.status_code == 400
    assert response.context["form"].errors["skill_group"] == ['Server routing-a has no skill group named "Spanish".']
    assert not CollaborationSession.objects.exists()


# --- No healthy routing server: 503 with Retry-After ----------------------------------------------------


def test_with_no_healthy_server_the_request_is_answered_503_with_retry_after_and_a_message(anonymous_client, server):
    all_servers_down()

    response = request_session(anonymous_client, topic="Invoice 42")

    assert response.status_code == 503
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert "No agent server is available right now" in text(response)
    assert 'value="Invoice 42"' in text(response)  # what the caller typed is kept
    assert not CollaborationSession.objects.exists()


def test_with_no_healthy_server_the_form_says_so_before_the_caller_types(anonymous_client, server):
    all_servers_down()

    response = anonymous_client.get(URL)

    assert response.status_code == 503
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert "No agent server is available right now" in text(response)


# --- The queue page ----------------------------------------------------------------------------------------


def test_the_queue_page_shows_the_state_and_how_many_callers_are_ahead(anonymous_client, server):
    earlier = timezone.now() - timedelta(minutes=2)
    SessionFactory(server=server, queued_at=earlier)
    SessionFactory(server=server, queued_at=earlier)
    request_session(anonymous_client)
    session = CollaborationSession.objects.get(caller_name="Ada Lovelace")

    page = text(anonymous_client.get(f"/request/{session.pk}/"))

    assert "You are in the queue" in page
    assert '<span class="num">2</span> callers ahead of you' in page
    assert f'data-poll-url="/request/{session.pk}/status/"' in page
    assert '<meta http-equiv="refresh" content="5">' in page  # inside <noscript>


def test_the_status_fragment_follows_the_session_to_its_end(anonymous_client, agent):
    session = routed_session(logged_in(agent))
    status_url = f"/request/{session.pk}/status/"

    assert "You are connected" in text(anonymous_client.get(status_url))

    CollaborationSession.objects.filter(pk=session.pk).update(
        state=SessionState.ENDED, end_reason=EndReason.AGENT_ENDED, ended_at=timezone.now()
    )
    page = text(anonymous_client.get(status_url))
    assert "This session has ended" in page
    assert "data-final" in page
    assert "The agent ended the session." in page


def test_an_unknown_or_malformed_session_id_is_a_404(anonymous_client, db):
    assert anonymous_client.get(f"/request/{uuid.uuid4()}/").status_code == 404
    assert anonymous_client.get("/request/12345/").status_code == 404
    assert anonymous_client.get(f"/request/{uuid.uuid4()}/status/").status_code == 404


def test_a_caller_can_leave_the_queue(anonymous_client, server):
    request_session(anonymous_client)
    session = CollaborationSession.objects.get()

    response = anonymous_client.post(f"/request/{session.pk}/leave/", follow=True)

    session.refresh_from_db()
    assert (session.state, session.end_reason) == (SessionState.ENDED, EndReason.CALLER_LEFT)
    assert "This session has ended" in text(response)
    assert anonymous_client.post(f"/request/{session.pk}/leave/").status_code == 302  # twice is harmless


def test_leaving_needs_the_csrf_token(server):
    session = SessionFactory(server=server)

    assert Client(enforce_csrf_checks=True).post(f"/request/{session.pk}/leave/").status_code == 403
    session.refresh_from_db()
    assert session.state == SessionState.QUEUED
