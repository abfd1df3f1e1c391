"""An agent of a failed server (issue 15, point 3): nothing can be routed to it, so it can
neither log in to the contact centre nor go ready, and every refusal says where to log in
instead (the surviving routing servers and their Agent desktops)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from failover.choices import Health
from failover.models import Server
from failover.services.servers import server_health_changed
from sessions.choices import AgentState, LogoutReason
from sessions.models import Agent
from sessions.services.lifecycle import ServerFailed, agent_login, agent_set_ready
from tests.desktop.conftest import logged_in
from tests.factories import PASSWORD, AgentFactory, ServerFactory

pytestmark = pytest.mark.django_db

WHERE_INSTEAD = "routing-b (http://127.0.0.1:8001/agent/)"


def make_servers() -> Server:
    """routing-a (returned), routing-b up, routing-c down."""
    failed = ServerFactory(name="routing-a", base_url="http://127.0.0.1:8000")
    ServerFactory(name="routing-b", base_url="http://127.0.0.1:8001/")
    ServerFactory(name="routing-c", base_url="http://127.0.0.1:8002")
    Server.objects.exclude(name="routing-c").update(health=Health.UP)
    Server.objects.filter(name="routing-c").update(health=Health.DOWN)
    return failed


def fail(server: Server) -> None:
    """Declared failed by the monitor's service, as when its node stops answering."""
    server_health_changed(server_id=server.pk, health=Health.DOWN, at=timezone.now(), error="refused")


@pytest.fixture
def failed_server(db) -> Server:
    server = make_servers()
    fail(server)
    return server


@pytest.fixture
def stranded(db) -> Agent:
    """An agent of routing-a, ready when its server failed (and logged out by the failure)."""
    server = make_servers()
    agent = logged_in(AgentFactory(user__username="maria", server=server), AgentState.READY)
    fail(server)
    agent.refresh_from_db()
    return agent


def test_the_services_refuse_log_in_and_ready_and_say_where_to_log_in(stranded):
    with pytest.raises(ServerFailed) as refused:
        agent_login(agent_id=stranded.pk, actor=stranded.user)
    assert "Your server routing-a has failed" in refused.value.messages[0]
    assert WHERE_INSTEAD in refused.value.messages[0]
    assert "routing-c" not in refused.value.messages[0]  # down too: no use going there

    logged_in(stranded)  # as if it had logged in just before the failure was declared
    with pytest.raises(ServerFailed):
        agent_set_ready(agent_id=stranded.pk, ready=True, actor=stranded.user)
    stranded.refresh_from_db()
    assert stranded.state == AgentState.NOT_READY
    # Going not ready stays possible: it asks nothing of the server.
    agent_set_ready(agent_id=stranded.pk, ready=False, actor=stranded.user)


def test_the_log_in_page_refuses_with_where_to_log_in_instead(stranded):
    client = Client()
    response = client.post("/agent/login/", {"username": "maria", "password": PASSWORD})

    assert response.status_code == 200
    page = response.content.decode()
    assert "Your server routing-a has failed" in page
    assert WHERE_INSTEAD in page
    assert "_auth_user_id" not in client.session
    stranded.refresh_from_db()
    assert (stranded.state, stranded.logout_reason) == (AgentState.LOGGED_OUT, LogoutReason.SERVER_FAILED)


def test_the_ready_button_is_refused_with_a_clear_message(stranded):
    logged_in(stranded)
    client = Client()
    client.force_login(stranded.user)

    response = client.post("/agent/state/", {"ready": "1"}, follow=True)

    page = response.content.decode()
    assert "Your server routing-a has failed" in page
    assert "New sessions can be routed to you" not in page
    stranded.refresh_from_db()
    assert stranded.state == AgentState.NOT_READY


def test_the_state_panel_says_the_server_failed_and_links_the_survivors_desktop(stranded):
    client = Client()
    client.force_login(stranded.user)

    for url in ("/agent/", "/agent/partials/state/"):
        page = client.get(url).content.decode()
        assert "Your server routing-a has failed" in page
        assert '<a href="http://127.0.0.1:8001/agent/">routing-b</a>' in page
        assert "Log in again" not in page
        assert 'id="agent-ready"' not in page


def test_with_no_survivor_the_agent_is_told_to_wait(failed_server):
    Server.objects.filter(name="routing-b").update(health=Health.DOWN)
    agent = AgentFactory(server=failed_server)

    with pytest.raises(ServerFailed, match="No other routing server is up either"):
        agent_login(agent_id=agent.pk, actor=agent.user)
