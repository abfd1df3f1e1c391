"""The event timeline (/console/timeline/): who may see it, the failover events with their
durations and the audit history with before and after, newest first, filtered by server and
by action, paginated, live (the same fragment), in a constant number of queries."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from failover.choices import AuditAction, FailoverKind, PeerKind, PeerPriority
from failover.models import AuditEntry, Link, Peer, Policy, Server
from failover.services.audit import audit_record
from tests.factories import FailoverEventFactory, PeerFactory, ServerFactory, SessionFactory

pytestmark = pytest.mark.django_db

URL = "/console/timeline/"


def server_with_pair(name: str) -> tuple[Server, Link, Peer, Peer]:
    server = ServerFactory(name=name)
    primary = PeerFactory(
        server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.PRIMARY, name=f"{name}-mb-1"
    )
    secondary = PeerFactory(
        server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.SECONDARY, name=f"{name}-mb-2"
    )
    return server, Link.objects.get(server=server, kind=PeerKind.MEDIA_BLENDER), primary, secondary


def audited(target, action: AuditAction, reason: str, *, minutes_ago: float = 0, **changes) -> AuditEntry:
    entry = audit_record(actor="system:poller", action=action, target=target, reason=reason, **changes)
    AuditEntry.objects.filter(pk=entry.pk).update(created_at=timezone.now() - timedelta(minutes=minutes_ago))
    return entry


def text(html: str) -> str:
    """What the page says, without the markup."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))


def rows_of(html: str, prefix: str) -> list[str]:
    """The ids of the table rows (``event-12``, ``audit-7``) in page order."""
    return re.findall(rf'<tr id="({prefix}-\d+)"', html)


# --- Access ------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [URL, f"{URL}?fragment=1"])
def test_an_anonymous_visitor_is_sent_to_the_log_in_page(anonymous_client, url):
    response = anonymous_client.get(url)

    assert response.status_code == 302
    assert response.url.startswith("/login/")


@pytest.mark.parametrize("url", [URL, f"{URL}?fragment=1"])
def test_an_agent_is_refused(agent_client, url):
    response = agent_client.get(url)

    assert response.status_code == 403


def test_the_navigation_leads_to_the_timeline_and_marks_it_current(admin_client):
    page = admin_client.get(URL).content.decode()
    overview = admin_client.get("/").content.decode()

    assert f'<a href="{URL}" aria-current="page">Timeline</a>' in page
    assert f'<a href="{URL}">Timeline</a>' in overview
    assert 'data-live-ws="/ws/status/"' in page
    assert f'data-live-partial="{URL}?fragment=1"' in page


# --- Content -----------------------------------------------------------------------------------


def test_failover_events_show_their_peers_reason_and_durations_in_milliseconds(admin_client):
    server, link, primary, secondary = server_with_pair("routing-a")
    detected = timezone.now() - timedelta(minutes=5)
    FailoverEventFactory(
        server=server,
        link=link,
        kind=FailoverKind.AUTOMATIC,
        from_peer=primary,
        to_peer=secondary,
        epoch=4,
        reason="routing-a-mb-1 stopped answering",
        failed_at=detected - timedelta(milliseconds=312),
        detected_at=detected,
        completed_at=detected + timedelta(milliseconds=41),
    )

    html = admin_client.get(URL).content.decode()

    assert "Automatic switchover" in html
    assert "routing-a-mb-1 → routing-a-mb-2" in html
    assert "routing-a-mb-1 stopped answering" in html
    assert '<span class="num">312.0</span> ms' in html
    assert '<span class="num">41.0</span> ms' in html


def test_audit_entries_show_actor_action_target_reason_before_and_after(admin_client, admin_user):
    server, link, *_ = server_with_pair("routing-a")
    audit_record(
        actor=admin_user,
        action=AuditAction.LINK_SWITCHOVER,
        target=link,
        reason="patching routing-a-mb-1",
        before={"connected": "routing-a-mb-1", "epoch": 2},
        after={"connected": "routing-a-mb-2", "epoch": 3},
    )

    html = admin_client.get(URL).content.decode()

    assert "user:admin" in html
    assert "Link switched over" in html
    assert "routing-a Media Blender link" in html
    assert "patching routing-a-mb-1" in html
    assert (
        '<span class="change-field">epoch</span> <span class="change-before">2</span> → '
        '<span class="change-after">3</span>' in html
    )
    assert (
        '<span class="change-before">routing-a-mb-1</span> → <span class="change-after">routing-a-mb-2</span>' in html
    )


def test_both_lists_are_newest_first(admin_client):
    server, link, *_ = server_with_pair("routing-a")
    now = timezone.now()
    old = FailoverEventFactory(server=server, detected_at=now - timedelta(hours=2))
    new = FailoverEventFactory(server=server, detected_at=now - timedelta(minutes=1))
    older = audited(link, AuditAction.LINK_SWITCHOVER, "older", minutes_ago=90)
    newer = audited(link, AuditAction.LINK_SWITCHOVER, "newer", minutes_ago=2)

    html = admin_client.get(URL).content.decode()

    assert rows_of(html, "event") == [f"event-{new.pk}", f"event-{old.pk}"]
    assert rows_of(html, "audit") == [f"audit-{newer.pk}", f"audit-{older.pk}"]


def test_empty_lists_say_so(admin_client):
    html = admin_client.get(URL).content.decode()

    assert "No failover events" in html
    assert "No audit entries" in html


# --- Filters ------------------------------------------------------------------------------------


def test_the_server_filter_keeps_that_servers_events_and_the_audit_of_what_belongs_to_it(admin_client):
    server_a, link_a, peer_a, _ = server_with_pair("routing-a")
    server_b, link_b, *_ = server_with_pair("routing-b")
    event_a = FailoverEventFactory(server=server_a, reason="a failed over")
    FailoverEventFactory(server=server_b, reason="b failed over")
    session_a = SessionFactory(server=server_a, caller_name="Ada")
    SessionFactory(server=server_b, caller_name="Bob")
    mine = [
        audited(server_a, AuditAction.SERVER_FAILED, "about the server"),
        audited(link_a, AuditAction.LINK_SWITCHOVER, "about its link"),
        audited(peer_a, AuditAction.PEER_MAINTENANCE_ON, "about its peer"),
        audited(session_a, AuditAction.SESSION_REQUESTED, "about its session"),
    ]
    audited(link_b, AuditAction.LINK_SWITCHOVER, "about another server")
    audited(Policy.current(), AuditAction.POLICY_CHANGED, "about no server")

    html = admin_client.get(URL, {"server": server_a.pk}).content.decode()

    assert rows_of(html, "event") == [f"event-{event_a.pk}"]
    assert sorted(rows_of(html, "audit")) == sorted(f"audit-{entry.pk}" for entry in mine)
    assert "Showing 1–1 of 1 failover events matching the filters" in text(html)
    assert f'<option value="{server_a.pk}" selected>routing-a</option>' in html


def test_the_action_filter_narrows_the_audit_history_only(admin_client):
    server, link, peer, _ = server_with_pair("routing-a")
    event = FailoverEventFactory(server=server)
    switched = audited(link, AuditAction.LINK_SWITCHOVER, "switched")
    audited(peer, AuditAction.PEER_MAINTENANCE_ON, "maintenance")

    html = admin_client.get(URL, {"action": AuditAction.LINK_SWITCHOVER}).content.decode()

    assert rows_of(html, "audit") == [f"audit-{switched.pk}"]
    assert rows_of(html, "event") == [f"event-{event.pk}"]
    assert '<option value="link.switchover" selected>Link switched over</option>' in html


def test_unknown_filter_values_show_everything(admin_client):
    server, link, *_ = server_with_pair("routing-a")
    FailoverEventFactory(server=server)
    audited(link, AuditAction.LINK_SWITCHOVER, "switched")

    html = admin_client.get(URL, {"server": "abc", "action": "drop.tables"}).content.decode()

    assert len(rows_of(html, "event")) == 1
    assert len(rows_of(html, "audit")) == 1


# --- Pagination -----------------------------------------------------------------------------------


def test_each_list_is_paginated_on_its_own_and_the_links_keep_the_filters(admin_client):
    server, link, *_ = server_with_pair("routing-a")
    now = timezone.now()
    events = [FailoverEventFactory(server=server, detected_at=now - timedelta(minutes=n)) for n in range(30)]
    entries = [audited(link, AuditAction.LINK_SWITCHOVER, f"entry {n}", minutes_ago=n) for n in range(27)]

    first = admin_client.get(URL, {"server": server.pk}).content.decode()
    second = admin_client.get(URL, {"server": server.pk, "page": 2, "audit_page": 2}).content.decode()

    assert rows_of(first, "event") == [f"event-{e.pk}" for e in events[:25]]
    assert rows_of(second, "event") == [f"event-{e.pk}" for e in events[25:]]
    assert rows_of(first, "audit") == [f"audit-{e.pk}" for e in entries[:25]]
    assert rows_of(second, "audit") == [f"audit-{e.pk}" for e in entries[25:]]
    assert f'href="?server={server.pk}&amp;page=2"' in first
    assert f'href="?server={server.pk}&amp;audit_page=2"' in first
    # A live refresh renders the same links: without ?fragment=1.
    fragment = admin_client.get(URL, {"server": server.pk, "fragment": 1}).content.decode()
    assert f'href="?server={server.pk}&amp;page=2"' in fragment
    assert "fragment=1" not in re.sub(r'data-live-partial="[^"]*"', "", fragment)


# --- Live fragment and speed -----------------------------------------------------------------------


def test_the_fragment_is_the_pages_live_content_alone(admin_client):
    server, *_ = server_with_pair("routing-a")
    event = FailoverEventFactory(server=server)

    response = admin_client.get(URL, {"fragment": 1})

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.content.decode()
    assert "<html" not in body
    assert 'name="action"' not in body  # the filter form stays on the page
    for region in ("timeline-events", "timeline-audit", "timeline-events-count", "timeline-audit-count"):
        assert f'data-region="{region}"' in body
    assert f'id="event-{event.pk}"' in body


def queries_of(client: Client, url: str, params: dict) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url, params).status_code == 200
    return len(captured)


@pytest.mark.parametrize("fragment", [False, True])
def test_the_number_of_queries_does_not_grow_with_the_history(admin_client, fragment):
    def grow(names: list[str]) -> dict:
        for name in names:
            server, link, peer, _ = server_with_pair(name)
            session = SessionFactory(server=server)
            for n in range(8):
                FailoverEventFactory(server=server, link=link, from_peer=peer, to_peer=peer, actor=None)
                audited(link, AuditAction.LINK_SWITCHOVER, f"{name} {n}", before={"epoch": n}, after={"epoch": n + 1})
                audited(session, AuditAction.SESSION_REQUESTED, f"{name} {n}")
        return {"server": Server.objects.get(name=names[0]).pk, "action": AuditAction.LINK_SWITCHOVER}

    base = {"fragment": 1} if fragment else {}
    filters = grow(["routing-a"])
    small = (queries_of(admin_client, URL, base), queries_of(admin_client, URL, {**base, **filters}))
    grow([f"routing-{n}" for n in range(2, 8)])
    large = (queries_of(admin_client, URL, base), queries_of(admin_client, URL, {**base, **filters}))

    assert small == large
    assert max(large) <= 7
