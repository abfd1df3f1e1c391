"""The console's sessions page (``/console/sessions/``): who may see it, its filters and
pages, ending a session with a reason (audit, refusals, CSRF) and a constant number of SQL
queries whatever the number of sessions (issue 5)."""

from __future__ import annotations

import re
import uuid

import pytest

from failover.choices import AuditAction
from failover.models import AuditEntry
from sessions.choices import EndReason, PhoneLeg, SessionState
from sessions.models import CollaborationSession
from tests.console.session_rows import bulk_world, csrf_client, ended_session, queries_of, queued_session
from tests.desktop.conftest import logged_in, routed_session
from tests.factories import AgentFactory, ServerFactory, SkillGroupFactory

pytestmark = pytest.mark.django_db

URL = "/console/sessions/"


def row_ids(html: str) -> list[str]:
    """The sessions listed, in page order."""
    return re.findall(r'<tr[^>]* id="session-([0-9a-f-]+)"', html)


@pytest.fixture
def world(server, agent, other_agent):
    """Two servers; a queued, an active (hung up) and an ended session on routing-a, one
    active on routing-b; newest first: Hopper, Turing, Lovelace, Babbage, Noether."""
    routing_b = ServerFactory(name="routing-b")
    far_agent = logged_in(AgentFactory(user__username="far-agent", user__first_name="Fay", server=routing_b))
    billing = SkillGroupFactory(server=server, name="Billing")
    return {
        "noether": ended_session(server, caller_name="Emmy Noether", end_reason=EndReason.CALLER_LEFT),
        "babbage": routed_session(logged_in(other_agent), caller_name="Charles Babbage", topic="Engines"),
        "lovelace": routed_session(
            logged_in(agent),
            caller_name="Ada Lovelace",
            topic="Invoice looks wrong",
            skill_group=billing,
            phone_leg=PhoneLeg.HUNG_UP,
        ),
        "turing": routed_session(far_agent, caller_name="Alan Turing"),
        "hopper": queued_session(server, caller_name="Grace Hopper", topic="New plan"),
    }


# --- Access ------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [URL, f"{URL}?fragment=1"])
def test_an_anonymous_visitor_is_sent_to_the_log_in_page(anonymous_client, url):
    response = anonymous_client.get(url)

    assert response.status_code == 302
    assert response.url.startswith("/login/?next=/console/sessions/")


def test_an_agent_is_not_let_in_nor_can_end_a_session(agent_client, world):
    assert agent_client.get(URL).status_code == 403

    response = agent_client.post(f"{URL}{world['lovelace'].pk}/end/", {"reason": "not mine"})

    assert response.status_code == 403
    assert CollaborationSession.objects.get(pk=world["lovelace"].pk).state == SessionState.ACTIVE


# --- Content, filters, pages -------------------------------------------------------------------


def test_the_page_lists_every_session_newest_first_with_its_details(admin_client, world):
    response = admin_client.get(URL)

    assert response.status_code == 200
    html = response.content.decode()
    assert row_ids(html) == [str(world[name].pk) for name in ("hopper", "turing", "lovelace", "babbage", "noether")]
    assert 'data-live-ws="/ws/status/"' in html
    assert "console/console.js" in html
    assert '<a href="/console/sessions/" aria-current="page">Sessions</a>' in html
    for text in ("Invoice looks wrong", "Billing", "Caller hung up", "Caller left", "routing-b", "Fay"):
        assert text in html
    assert '<span class="badge badge-queued">Queued</span>' in html
    assert 'Showing <span class="num">1</span>–<span class="num">5</span> of <span class="num">5</span>' in html
    # Open sessions have the action, named after their row; the ended one has none.
    assert 'aria-label="End session with Ada Lovelace"' in html
    assert 'aria-label="End session with Emmy Noether"' not in html
    assert html.count('scope="col"') >= 8
    assert 'scope="row"' in html
    assert "<caption" in html
    assert "style=" not in html
    assert "<script>" not in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=queued", ["hopper"]),
        ("state=active", ["turing", "lovelace", "babbage"]),
        ("state=ended", ["noether"]),
        ("state=open", ["hopper", "turing", "lovelace", "babbage"]),
        ("server={routing_b}", ["turing"]),
        ("agent={agent}", ["lovelace"]),
        ("state=active&server={routing_a}", ["lovelace", "babbage"]),
        ("state=nonsense&server=abc", ["hopper", "turing", "lovelace", "babbage", "noether"]),  # ignored
    ],
)
def test_the_filters_narrow_the_list(admin_client, world, agent, server, query, expected):
    routing_b = world["turing"].server
    response = admin_client.get(f"{URL}?{query.format(routing_a=server.pk, routing_b=routing_b.pk, agent=agent.pk)}")

    assert row_ids(response.content.decode()) == [str(world[name].pk) for name in expected]


def test_the_filter_form_shows_the_current_choices(admin_client, world, agent):
    html = admin_client.get(f"{URL}?state=active&agent={agent.pk}").content.decode()

    assert '<label for="filter-state">State</label>' in html
    assert '<option value="active" selected>Active</option>' in html
    assert f'<option value="{agent.pk}" selected>' in html
    assert '<optgroup label="routing-b">' in html
    assert 'role="search"' in html


def test_the_fragment_is_the_same_template_and_keeps_the_filters(admin_client, world):
    fragment = admin_client.get(f"{URL}?fragment=1&state=queued")

    assert fragment.status_code == 200
    assert fragment["Cache-Control"] == "no-store"
    body = fragment.content.decode()
    assert "<html" not in body
    assert "filter-state" not in body
    assert row_ids(body) == [str(world["hopper"].pk)]
    page = admin_client.get(URL).content.decode()
    for region in ("summary", "rows", "pager"):
        assert f'data-region="{region}"' in body
        assert f'data-region="{region}"' in page


def test_fifty_a_page_and_the_page_links_keep_the_filters(admin_client, server):
    for n in range(60):
        queued_session(server, caller_name=f"Caller {n:02d}", waited=n)
    ended_session(server, caller_name="Not queued")

    first = admin_client.get(f"{URL}?state=queued").content.decode()
    second = admin_client.get(f"{URL}?state=queued&page=2").content.decode()
    fragment = admin_client.get(f"{URL}?state=queued&page=2&fragment=1").content.decode()

    assert len(row_ids(first)) == 50
    assert len(row_ids(second)) == 10
    assert "Caller 00" in first
    assert "Caller 59" in second
    assert "Not queued" not in first + second
    assert 'href="?state=queued&amp;page=2"' in first
    assert 'Page <span class="num">2</span> of <span class="num">2</span>' in second
    assert 'href="?state=queued&amp;page=1"' in fragment
    assert "fragment=1" not in fragment
    assert len(row_ids(admin_client.get(f"{URL}?state=queued&page=99").content.decode())) == 10  # nearest page


def test_an_empty_list_says_so(admin_client, server):
    html = admin_client.get(f"{URL}?state=queued").content.decode()

    assert "No sessions match the filters" in html


# --- Ending a session ----------------------------------------------------------------------------


def test_ending_a_session_ends_it_with_the_reason_audits_and_reports(admin_user, world):
    client, token = csrf_client(admin_user, URL)
    lovelace = world["lovelace"]

    response = client.post(
        f"{URL}{lovelace.pk}/end/",
        {"reason": "Caller asked us to", "next": "/console/sessions/?state=active", "csrfmiddlewaretoken": token},
        follow=True,
    )

    assert response.redirect_chain[-1][0] == "/console/sessions/?state=active"
    html = response.content.decode()
    assert "The session with Ada Lovelace has ended." in html
    lovelace.refresh_from_db()
    assert (lovelace.state, lovelace.end_reason, lovelace.ended_by) == (
        SessionState.ENDED,
        EndReason.ADMIN_ENDED,
        admin_user,
    )
    entry = AuditEntry.objects.get(action=AuditAction.SESSION_ENDED, object_id=str(lovelace.pk))
    assert (entry.actor, entry.reason, entry.after["end_reason"]) == (admin_user, "Caller asked us to", "admin_ended")
    assert str(lovelace.pk) not in row_ids(html)  # no longer active: gone from the filtered list


def test_ending_an_ended_session_is_refused_with_a_message(admin_client, world):
    noether = world["noether"]

    response = admin_client.post(f"{URL}{noether.pk}/end/", {"reason": "twice"}, follow=True)

    assert response.status_code == 200
    assert "The session with Emmy Noether had already ended; nothing was done." in response.content.decode()
    noether.refresh_from_db()
    assert noether.end_reason == EndReason.CALLER_LEFT
    assert not AuditEntry.objects.filter(action=AuditAction.SESSION_ENDED).exists()


def test_ending_an_unknown_session_says_so(admin_client):
    response = admin_client.post(f"{URL}{uuid.uuid4()}/end/", {"reason": "gone"}, follow=True)

    assert response.status_code == 200
    assert "That session does not exist (any more); nothing was done." in response.content.decode()


def test_ending_without_a_reason_is_refused(admin_client, world):
    response = admin_client.post(f"{URL}{world['hopper'].pk}/end/", {"reason": "  "}, follow=True)

    assert "End of the session with Grace Hopper not done: give a reason." in response.content.decode()
    assert CollaborationSession.objects.get(pk=world["hopper"].pk).state == SessionState.QUEUED


def test_an_end_without_the_csrf_token_is_refused(admin_user, world):
    client, _ = csrf_client(admin_user, URL)

    response = client.post(f"{URL}{world['hopper'].pk}/end/", {"reason": "no token"})

    assert response.status_code == 403
    assert CollaborationSession.objects.get(pk=world["hopper"].pk).state == SessionState.QUEUED


def test_a_foreign_next_is_not_followed(admin_client, world):
    response = admin_client.post(f"{URL}{world['hopper'].pk}/end/", {"reason": "x", "next": "https://evil.test/"})

    assert response.url == "/console/sessions/"


def test_the_end_answers_post_only(admin_client, world):
    assert admin_client.get(f"{URL}{world['hopper'].pk}/end/").status_code == 405


# --- Speed ---------------------------------------------------------------------------------------


def add_sessions(server, agents, count: int) -> None:
    for n in range(count):
        if n % 3 == 0:
            queued_session(server, skill_group=SkillGroupFactory(server=server))
        elif n % 3 == 1:
            routed_session(agents[n % len(agents)])
        else:
            ended_session(server, ended_by=agents[0].user)


@pytest.mark.parametrize("query", ["", "?fragment=1", "?state=open", "?state=active&fragment=1"])
def test_the_number_of_queries_does_not_grow_with_the_sessions(admin_client, server, agent, other_agent, query):
    agents = [logged_in(agent), logged_in(other_agent)]
    add_sessions(server, agents, 5)
    few = queries_of(admin_client, URL + query)
    add_sessions(ServerFactory(name="routing-b"), agents, 55)  # 60: more than one page
    many = queries_of(admin_client, URL + query)

    assert many == few
    assert few <= 8


@pytest.mark.slow
def test_a_thousand_servers_and_ten_thousand_sessions(admin_client, server):
    """Every console page of sessions, agents and the queue: 200 and the same queries as
    with a handful of rows, at the scale of issue 5 (bulk_create: a few seconds)."""
    urls = [
        URL,
        f"{URL}?fragment=1",
        f"{URL}?state=queued&page=3",
        "/console/agents/",
        "/console/agents/?fragment=1&state=ready",
        "/console/queue/",
        "/console/queue/?fragment=1&page=2",
    ]
    bulk_world(servers=3, sessions=9, prefix="small")
    few = {url: queries_of(admin_client, url) for url in urls}
    bulk_world(servers=1000, sessions=10_000)
    assert CollaborationSession.objects.count() == 10_009

    many = {url: queries_of(admin_client, url) for url in urls}

    assert many == few
    assert max(many.values()) <= 6  # log-in (2), COUNT, slice, then prefetch/aggregate/options
    html = admin_client.get("/console/queue/").content.decode()
    assert "more servers with shorter waits" in html
