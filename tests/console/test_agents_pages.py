"""The console's agents page (``/console/agents/``): who may see it, what each row shows,
its filters and pages, forcing an agent out with a reason (audit, refusals, CSRF) and a
constant number of SQL queries whatever the number of agents (issue 5)."""

from __future__ import annotations

import re

import pytest

from failover.choices import AuditAction
from failover.models import AuditEntry
from sessions.choices import AgentState, LogoutReason, SessionState
from sessions.models import Agent, CollaborationSession
from tests.console.session_rows import csrf_client, ended_session, queries_of
from tests.desktop.conftest import logged_in, routed_session
from tests.factories import AgentFactory, ServerFactory, SkillGroupFactory

pytestmark = pytest.mark.django_db

URL = "/console/agents/"


def row_ids(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr id="agent-(\d+)"', html)]


@pytest.fixture
def team(server):
    """routing-a: Ada (ready, two skill groups, two open sessions and an ended one) and Bob
    (logged out); routing-b: Cy (not ready)."""
    routing_b = ServerFactory(name="routing-b")
    billing = SkillGroupFactory(server=server, name="Billing")
    sales = SkillGroupFactory(server=server, name="Sales")
    ada = logged_in(
        AgentFactory(
            user__username="ada", user__first_name="Ada", user__last_name="King", server=server, max_sessions=3
        ),
        AgentState.READY,
    )
    ada.skill_groups.set([billing, sales])
    bob = AgentFactory(user__username="bob", user__first_name="Bob", user__last_name="Marsh", server=server)
    cy = logged_in(AgentFactory(user__username="cy", user__first_name="Cy", user__last_name="Young", server=routing_b))
    routed_session(ada, caller_name="First caller")
    routed_session(ada, caller_name="Second caller", state=SessionState.IN_TRANSIT)
    ended_session(server, agent=ada, caller_name="Old caller")
    return {"ada": ada, "bob": bob, "cy": cy}


# --- Access ------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [URL, f"{URL}?fragment=1"])
def test_an_anonymous_visitor_is_sent_to_the_log_in_page(anonymous_client, url):
    response = anonymous_client.get(url)

    assert response.status_code == 302
    assert response.url.startswith("/login/?next=/console/agents/")


def test_an_agent_is_not_let_in_nor_can_force_a_log_out(agent_client, team):
    assert agent_client.get(URL).status_code == 403

    response = agent_client.post(f"{URL}{team['ada'].pk}/logout/", {"reason": "rival"})

    assert response.status_code == 403
    assert Agent.objects.get(pk=team["ada"].pk).state == AgentState.READY


# --- Content, filters, pages -------------------------------------------------------------------


def test_each_agent_with_state_server_skill_groups_open_sessions_and_log_in(admin_client, team):
    html = admin_client.get(URL).content.decode()

    assert row_ids(html) == [team["ada"].pk, team["bob"].pk, team["cy"].pk]  # by server, then name
    ada_row = html.split(f'<tr id="agent-{team["ada"].pk}"', 1)[1].split("</tr>", 1)[0]
    assert "Ada King" in ada_row
    assert "Ready" in ada_row
    assert "routing-a" in ada_row
    assert "Billing, Sales" in ada_row
    assert '<span class="num">2</span>' in ada_row  # the ended session does not count
    assert f'datetime="{team["ada"].logged_in_at.isoformat()}"' in ada_row
    assert 'aria-label="Force log-out of Ada King"' in ada_row
    bob_row = html.split(f'<tr id="agent-{team["bob"].pk}"', 1)[1].split("</tr>", 1)[0]
    assert "Logged out" in bob_row
    assert "Force" not in bob_row
    assert '<a href="/console/agents/" aria-current="page">Agents</a>' in html
    assert "style=" not in html
    assert "<script>" not in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=ready", ["ada"]),
        ("state=logged_out", ["bob"]),
        ("state=not_ready", ["cy"]),
        ("server={routing_b}", ["cy"]),
        ("server={routing_a}&state=logged_out", ["bob"]),
    ],
)
def test_the_filters_narrow_the_list(admin_client, team, server, query, expected):
    url = f"{URL}?{query.format(routing_a=server.pk, routing_b=team['cy'].server_id)}"

    assert row_ids(admin_client.get(url).content.decode()) == [team[name].pk for name in expected]


def test_the_fragment_keeps_the_filters(admin_client, team):
    fragment = admin_client.get(f"{URL}?fragment=1&state=ready")

    assert fragment["Cache-Control"] == "no-store"
    body = fragment.content.decode()
    assert "<html" not in body
    assert row_ids(body) == [team["ada"].pk]


def test_fifty_a_page_and_the_page_links_keep_the_filters(admin_client, server):
    for n in range(55):
        logged_in(AgentFactory(user__username=f"agent-{n:02d}", server=server), AgentState.READY)

    first = admin_client.get(f"{URL}?state=ready").content.decode()
    second = admin_client.get(f"{URL}?state=ready&page=2").content.decode()

    assert len(row_ids(first)) == 50
    assert len(row_ids(second)) == 5
    assert 'href="?state=ready&amp;page=2"' in first


# --- Force log-out -------------------------------------------------------------------------------


def test_forcing_a_log_out_logs_the_agent_out_audits_and_leaves_its_sessions(admin_user, team):
    client, token = csrf_client(admin_user, URL)
    ada = team["ada"]

    response = client.post(
        f"{URL}{ada.pk}/logout/",
        {"reason": "Left for the day without logging out", "next": URL, "csrfmiddlewaretoken": token},
        follow=True,
    )

    html = response.content.decode()
    assert "Ada King has been logged out. Their open sessions stay as they are." in html
    ada.refresh_from_db()
    assert (ada.state, ada.logout_reason) == (AgentState.LOGGED_OUT, LogoutReason.ADMIN_FORCED)
    entry = AuditEntry.objects.get(action=AuditAction.AGENT_LOGGED_OUT, object_id=str(ada.pk))
    assert (entry.actor, entry.reason) == (admin_user, "Left for the day without logging out")
    assert entry.after == {"state": AgentState.LOGGED_OUT, "logout_reason": LogoutReason.ADMIN_FORCED}
    assert CollaborationSession.objects.filter(agent=ada).exclude(state=SessionState.ENDED).count() == 2
    ada_row = html.split(f'<tr id="agent-{ada.pk}"', 1)[1].split("</tr>", 1)[0]
    assert "Forced by an administrator" in ada_row


def test_forcing_out_a_logged_out_agent_changes_nothing_and_says_so(admin_client, team):
    response = admin_client.post(f"{URL}{team['bob'].pk}/logout/", {"reason": "again"}, follow=True)

    assert "Bob Marsh is already logged out; nothing was done." in response.content.decode()
    assert not AuditEntry.objects.filter(action=AuditAction.AGENT_LOGGED_OUT).exists()


def test_a_log_out_needs_a_reason(admin_client, team):
    response = admin_client.post(f"{URL}{team['cy'].pk}/logout/", {"reason": ""}, follow=True)

    assert "Log-out of Cy Young not done: give a reason." in response.content.decode()
    assert Agent.objects.get(pk=team["cy"].pk).state == AgentState.NOT_READY


def test_an_unknown_agent_says_so(admin_client):
    response = admin_client.post(f"{URL}999999/logout/", {"reason": "who"}, follow=True)

    assert response.status_code == 200
    assert "That agent does not exist (any more); nothing was done." in response.content.decode()


def test_a_log_out_without_the_csrf_token_is_refused(admin_user, team):
    client, _ = csrf_client(admin_user, URL)

    response = client.post(f"{URL}{team['cy'].pk}/logout/", {"reason": "no token"})

    assert response.status_code == 403
    assert Agent.objects.get(pk=team["cy"].pk).state == AgentState.NOT_READY


# --- Speed ---------------------------------------------------------------------------------------


def add_agents(server, count: int, start: int) -> None:
    groups = [SkillGroupFactory(server=server), SkillGroupFactory(server=server)]
    for n in range(start, start + count):
        agent = logged_in(AgentFactory(user__username=f"load-{n}", server=server, max_sessions=2), AgentState.READY)
        agent.skill_groups.set(groups)
        routed_session(agent)
        ended_session(server, agent=agent)


@pytest.mark.parametrize("query", ["", "?fragment=1", "?state=ready"])
def test_the_number_of_queries_does_not_grow_with_the_agents(admin_client, server, query):
    add_agents(server, 5, 0)
    few = queries_of(admin_client, URL + query)
    add_agents(ServerFactory(name="routing-b"), 55, 5)
    many = queries_of(admin_client, URL + query)

    assert many == few
    assert few <= 6
