"""The console's queue page (``/console/queue/``): who may see it, queue depth and oldest
wait per server and skill group, the queued sessions oldest first, 50 a page, and a
constant number of SQL queries whatever the size of the queue (issue 5)."""

from __future__ import annotations

import re

import pytest

from tests.console.session_rows import ended_session, queries_of, queued_session
from tests.desktop.conftest import logged_in, routed_session
from tests.factories import ServerFactory, SkillGroupFactory

pytestmark = pytest.mark.django_db

URL = "/console/queue/"


def row_ids(html: str) -> list[str]:
    return re.findall(r'<tr id="queued-([0-9a-f-]+)"', html)


def summary_row(html: str, name: str) -> str:
    """The text of the cells of the summary row whose header is ``name``: depth, oldest wait, since."""
    match = re.search(rf'<th scope="row"[^>]*>(?:(?!</tr>).)*?{re.escape(name)}</span></th>(.*?)</tr>', html, re.S)
    assert match, name
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


@pytest.fixture
def queue(server, agent):
    """routing-a: Billing 2 waiting (5 min and 1 min), Sales 1 (30 s), one without a skill
    group (10 s); routing-b: 1 in Support (2 h). Not queued: an active and an ended session."""
    routing_b = ServerFactory(name="routing-b")
    billing = SkillGroupFactory(server=server, name="Billing")
    sales = SkillGroupFactory(server=server, name="Sales")
    support = SkillGroupFactory(server=routing_b, name="Support")
    sessions = {
        "old_billing": queued_session(server, skill_group=billing, caller_name="Ada Lovelace", waited=300),
        "new_billing": queued_session(server, skill_group=billing, caller_name="Alan Turing", waited=60),
        "sales": queued_session(server, skill_group=sales, caller_name="Grace Hopper", waited=30),
        "no_group": queued_session(server, caller_name="Emmy Noether", waited=10),
        "support": queued_session(routing_b, skill_group=support, caller_name="Kurt Goedel", waited=7200),
    }
    routed_session(logged_in(agent), caller_name="With an agent")
    ended_session(server, caller_name="Gone already")
    return sessions


@pytest.mark.parametrize("url", [URL, f"{URL}?fragment=1"])
def test_an_anonymous_visitor_is_sent_to_the_log_in_page(anonymous_client, url):
    response = anonymous_client.get(url)

    assert response.status_code == 302
    assert response.url.startswith("/login/?next=/console/queue/")


def test_an_agent_is_not_let_in(agent_client):
    assert agent_client.get(URL).status_code == 403  # signed in, no role: no log-in loop


def test_depth_and_oldest_wait_per_server_and_skill_group(admin_client, queue):
    html = admin_client.get(URL).content.decode()

    totals = re.sub(r"<[^>]+>", " ", html.split('data-region="totals">', 1)[1].split("</div>", 1)[0]).split()
    assert " ".join(totals) == "5 queued oldest wait 2 h 00 min 2 servers with a queue"
    # Longest wait first: routing-b (2 h) before routing-a (5 min).
    assert html.index(">routing-b</span></th>") < html.index(">routing-a</span></th>")
    # Depth, then the oldest wait (a busy machine may add a second or two to the set-up's waits).
    assert re.match(r"1 2 h 00 min ", summary_row(html, "routing-b"))
    assert re.match(r"4 5 min 0\d s ", summary_row(html, "routing-a"))
    assert re.match(r"2 5 min 0\d s ", summary_row(html, "Billing"))
    assert re.match(r"1 3\d s ", summary_row(html, "Sales"))
    assert re.match(r"1 1\d s ", summary_row(html, "Any agent"))
    assert re.match(r"1 2 h 00 min ", summary_row(html, "Support"))
    assert '<a href="/console/queue/" aria-current="page">Queue</a>' in html
    assert "style=" not in html


def test_the_queued_sessions_oldest_first(admin_client, queue):
    html = admin_client.get(URL).content.decode()

    expected = ["support", "old_billing", "new_billing", "sales", "no_group"]
    assert row_ids(html) == [str(queue[name].pk) for name in expected]
    assert "With an agent" not in html
    assert "Gone already" not in html


def test_one_servers_queue(admin_client, queue, server):
    html = admin_client.get(f"{URL}?server={server.pk}").content.decode()

    assert f'<option value="{server.pk}" selected>routing-a</option>' in html
    assert str(queue["support"].pk) not in row_ids(html)
    assert len(row_ids(html)) == 4
    assert ">routing-b</span></th>" not in html
    assert "4</span> queued on this server" in html


def test_an_empty_queue_says_so(admin_client, server):
    html = admin_client.get(URL).content.decode()

    assert "The queue is empty" in html
    assert "No queued sessions" in html


def test_the_fragment_keeps_the_filter_and_its_page_links_the_page(admin_client, server):
    for n in range(55):
        queued_session(server, caller_name=f"Caller {n:02d}", waited=n)

    fragment = admin_client.get(f"{URL}?server={server.pk}&fragment=1")

    assert fragment["Cache-Control"] == "no-store"
    body = fragment.content.decode()
    assert "<html" not in body
    assert len(row_ids(body)) == 50
    assert "Caller 54" in body  # the oldest first
    assert f'href="?server={server.pk}&amp;page=2"' in body
    assert len(row_ids(admin_client.get(f"{URL}?server={server.pk}&page=2").content.decode())) == 5


def add_queue(servers: list, count: int) -> None:
    for n in range(count):
        server = servers[n % len(servers)]
        queued_session(server, skill_group=SkillGroupFactory(server=server), waited=n)


@pytest.mark.parametrize("query", ["", "?fragment=1", "?page=2"])
def test_the_number_of_queries_does_not_grow_with_the_queue(admin_client, server, query):
    add_queue([server], 5)
    few = queries_of(admin_client, URL + query)
    add_queue([ServerFactory(name=f"routing-{n}") for n in range(2, 7)], 55)
    many = queries_of(admin_client, URL + query)

    assert many == few
    assert few <= 6
