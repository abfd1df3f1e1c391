"""The overview at the size of a large installation: one page of servers (those with a problem
first, or alone), counts of the whole installation in the summary, a bounded alert banner, and
a constant number of SQL queries for the overview, its fragment, the timeline and the status
snapshot. The dataset is the benchmark's (bench/admin_desktop.py), built with bulk inserts."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bench.admin_desktop import build_installation
from console.live_fragments import shared_renders
from console.selectors import status_snapshot
from console.views.overview import BANNER_ALERTS, TOPOLOGY_PAGE_SIZE
from failover.choices import AlertKind, Health, PeerKind, PeerPriority
from failover.models import Alert, Peer, Server

pytestmark = pytest.mark.django_db


def cards(html: str) -> list[str]:
    """The servers of the topology, in page order."""
    return re.findall(r'<article[^>]* class="card server-card[^"]*" id="server-\d+" [^>]*data-server="([^"]+)"', html)


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))


@pytest.fixture
def thirty_servers() -> None:
    """srv-00000 .. srv-00029; srv-00007 and srv-00027 have their Media Blender link down
    and an open alert. Then srv-00012 goes down and a peer of srv-00020 into maintenance."""
    build_installation(30, 300)
    Server.objects.filter(name="srv-00012").update(health=Health.DOWN)
    Peer.objects.filter(
        server__name="srv-00020", kind=PeerKind.ADMIN_WORKSTATION, priority=PeerPriority.SECONDARY
    ).update(in_maintenance=True)


# --- Problems first, pages, filters ----------------------------------------------------------------


def test_servers_with_problems_come_first_the_worst_first(admin_client, thirty_servers):
    html = admin_client.get("/").content.decode()

    shown = cards(html)
    assert len(shown) == TOPOLOGY_PAGE_SIZE
    # down, then the two with a link down (by name), then a peer in maintenance, then the healthy ones.
    assert shown[:6] == ["srv-00012", "srv-00007", "srv-00027", "srv-00020", "srv-00000", "srv-00001"]
    assert "Showing 1–24 of 30 servers · servers with problems first" in text(html)


def test_the_summary_counts_the_whole_installation_not_the_page(admin_client, thirty_servers):
    html = admin_client.get("/", {"page": 2}).content.decode()

    assert len(cards(html)) == 30 - TOPOLOGY_PAGE_SIZE
    summary = text(html.split('data-region="summary"')[1].split("</div>")[0])
    assert "29/30 servers up" in summary
    assert "58/60 links connected" in summary
    assert "2 open alerts" in summary
    assert "4 servers with problems" in summary
    assert "Page 2 of 2" in text(html)


def test_problems_only_shows_the_servers_with_a_problem(admin_client, thirty_servers):
    html = admin_client.get("/", {"show": "problems"}).content.decode()

    assert cards(html) == ["srv-00012", "srv-00007", "srv-00027", "srv-00020"]
    assert '<a href="/?show=problems" aria-current="page">With problems <span class="num">4</span></a>' in html
    assert '<a href="/">All servers <span class="num">30</span></a>' in html
    assert "Showing 1–4 of 4 servers matching the filters" in text(html)


def test_servers_are_found_by_name_and_the_page_links_keep_the_search(admin_client, thirty_servers):
    found = admin_client.get("/", {"q": "srv-0002"}).content.decode()

    assert cards(found) == ["srv-00027", "srv-00020", *[f"srv-000{n}" for n in (21, 22, 23, 24, 25, 26, 28, 29)]]
    assert 'value="srv-0002"' in found
    nothing = admin_client.get("/", {"q": "no-such-server"}).content.decode()
    assert cards(nothing) == []
    assert "No server matches" in nothing


def test_the_fragment_takes_the_pages_filters_and_its_links_lead_to_the_page(admin_client, thirty_servers):
    fragment = admin_client.get("/partials/overview/", {"show": "problems"}).content.decode()

    assert cards(fragment) == ["srv-00012", "srv-00007", "srv-00027", "srv-00020"]
    assert 'href="/"' in fragment
    assert "fragment" not in fragment


def test_every_server_is_healthy_says_so_under_problems_only(admin_client):
    build_installation(3, 10)  # srv-00000..2: none of them is a troubled one

    html = admin_client.get("/", {"show": "problems"}).content.decode()

    assert "Every server is up with its links connected and no open alert." in html


def test_the_banner_lists_the_newest_alerts_and_counts_the_others(admin_client, thirty_servers):
    now = timezone.now()
    Alert.objects.bulk_create(
        Alert(server=server, kind=AlertKind.CONFIG_OUT_OF_SYNC, message=f"{server.name} out of sync", raised_at=now)
        for server in Server.objects.order_by("name")[:22]
    )

    html = admin_client.get("/").content.decode()

    assert html.count("data-alert-id=") == BANNER_ALERTS
    assert "and 4 more open alerts: their servers are listed first in the topology." in text(html)
    assert "24 open alerts" in text(html)


# --- A constant number of queries ----------------------------------------------------------------------


PAGES = [
    "/",
    "/?fragment=1",
    "/partials/overview/",
    "/?show=problems",
    "/?page=2&q=srv",
    "/console/timeline/",
    "/console/timeline/?fragment=1&action=link.switchover",
    "/console/timeline/?page=2&audit_page=3&server={server}",
]


def query_counts(client: Client) -> dict[str, int]:
    server = Server.objects.order_by("name").values_list("pk", flat=True).first()
    counts = {}
    for page in PAGES:
        url = page.format(server=server)
        shared_renders.clear()  # a render is measured, not a render shared by the watchers
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        counts[url.replace(str(server), "ID")] = len(captured)
    with CaptureQueriesContext(connection) as captured:
        status_snapshot()
    counts["status_snapshot()"] = len(captured)
    return counts


def test_the_queries_do_not_grow_with_the_installation(admin_client):
    build_installation(8, 30)  # srv-00007 has a problem: "problems only" shows a page too
    small = query_counts(admin_client)

    build_installation(60, 600, start=8)
    larger = query_counts(admin_client)

    assert larger == small
    assert small["/"] <= 10
    assert small["/console/timeline/"] <= 7
    assert small["status_snapshot()"] == 5


@pytest.mark.slow
def test_a_thousand_servers_and_ten_thousand_sessions_take_the_same_queries(admin_client):
    build_installation(10, 100)
    small = query_counts(admin_client)

    build_installation(990, 9900, start=10)
    assert Server.objects.count() == 1000
    large = query_counts(admin_client)

    assert large == small
    html = admin_client.get("/").content.decode()
    assert len(cards(html)) == TOPOLOGY_PAGE_SIZE
    assert re.search(r"Showing 1–24 of 1,?000 servers", text(html))
    assert "50 servers with problems" in text(html)
