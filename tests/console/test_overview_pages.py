"""The overview page (``/``) and its live fragment: who may see them, what they show, the
actions (reason, CSRF, audit, refusals) and a constant number of SQL queries."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from console.live_fragments import shared_renders
from failover.choices import AuditAction, FailoverKind, Health, PeerKind, PeerPriority
from failover.models import AuditEntry, FailoverEvent, Link, Peer, Server
from tests.factories import AlertFactory, FailoverEventFactory, PeerFactory, ServerFactory, peer_mark_connected

pytestmark = pytest.mark.django_db


def server_with_pairs(name: str) -> Link:
    """A server with both pairs, every peer up, the primaries connected; returns its MB link."""
    server = ServerFactory(name=name)
    for kind, short in ((PeerKind.MEDIA_BLENDER, "mb"), (PeerKind.ADMIN_WORKSTATION, "aw")):
        primary = PeerFactory(server=server, kind=kind, priority=PeerPriority.PRIMARY, name=f"{name}-{short}-1")
        PeerFactory(server=server, kind=kind, priority=PeerPriority.SECONDARY, name=f"{name}-{short}-2")
        Peer.objects.filter(server=server, kind=kind).update(health=Health.UP, last_latency_ms=1.5)
        peer_mark_connected(primary, epoch=2)
    Peer.objects.filter(name=f"{name}-mb-1").update(icm_side="A")
    return Link.objects.get(server=server, kind=PeerKind.MEDIA_BLENDER)


@pytest.fixture
def mb_link() -> Link:
    return server_with_pairs("routing-a")


# --- Access ------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/", "/partials/overview/"])
def test_an_anonymous_visitor_is_sent_to_the_log_in_page(anonymous_client, url):
    response = anonymous_client.get(url)

    assert response.status_code == 302
    assert response.url.startswith("/login/")


@pytest.mark.parametrize("url", ["/", "/partials/overview/"])
def test_an_agent_is_not_let_in(agent_client, url):
    response = agent_client.get(url)

    assert response.status_code == 403


def test_agents_cannot_act(agent_client, mb_link):
    response = agent_client.post(f"/console/links/{mb_link.pk}/switchover/", {"reason": "x"})

    assert response.status_code == 403
    assert not FailoverEvent.objects.exists()


# --- Content -----------------------------------------------------------------------------------


def test_the_page_shows_the_topology_alerts_and_recent_events(admin_client, mb_link):
    Peer.objects.filter(name="routing-a-aw-2").update(in_maintenance=True)
    Peer.objects.filter(name="routing-a-mb-2").update(health=Health.DOWN)
    AlertFactory(server=mb_link.server, message="Configuration may be out of sync: run Verify and Sync")
    FailoverEventFactory(
        server=mb_link.server,
        link=mb_link,
        kind=FailoverKind.AUTOMATIC,
        from_peer=Peer.objects.get(name="routing-a-mb-2"),
        to_peer=Peer.objects.get(name="routing-a-mb-1"),
        reason="routing-a-mb-2 is health down",
    )

    response = admin_client.get("/")

    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-live-ws="/ws/status/"' in html
    assert "console/console.js" in html
    assert 'aria-live="polite"' in html
    assert "Configuration may be out of sync: run Verify and Sync" in html
    assert 'data-peer="routing-a-mb-1" data-display-state="connected"' in html
    assert 'data-peer="routing-a-mb-2" data-display-state="down"' in html
    assert 'data-peer="routing-a-aw-1" data-display-state="connected"' in html
    assert 'data-peer="routing-a-aw-2" data-display-state="maintenance"' in html
    assert "ICM side A" in html
    assert "Automatic switchover" in html
    assert "routing-a-mb-2 is health down" in html
    assert "Switch routing-a Media Blender over to routing-a-mb-2" in html
    assert "Put routing-a-mb-1 into maintenance" in html
    assert "Take routing-a-aw-2 out of maintenance" in html


def test_a_degraded_server_shows_as_degraded_with_why_and_since_when(admin_client, mb_link):
    since = timezone.now()
    Server.objects.filter(pk=mb_link.server.pk).update(
        health=Health.UP, degraded_since=since, degraded_reason="HTTP requests waited 2.5 s for a thread"
    )

    html = admin_client.get("/").content.decode()

    assert 'title="HTTP requests waited 2.5 s for a thread" data-degraded>Degraded</span>' in html
    assert f'slow since <time datetime="{since.strftime("%Y-%m-%dT%H:%M:%S")}' in html


def test_the_fragment_is_the_same_template_as_the_page(admin_client, mb_link):
    page = admin_client.get("/").content.decode()
    fragment = admin_client.get("/partials/overview/")

    assert fragment.status_code == 200
    assert fragment["Cache-Control"] == "no-store"
    body = fragment.content.decode()
    assert "<html" not in body
    for region in ("alerts", "summary", "topology", "events"):
        assert f'data-region="{region}"' in body
        assert f'data-region="{region}"' in page
    assert f'id="link-{mb_link.pk}"' in body


# --- Actions ------------------------------------------------------------------------------------


def csrf_client(user) -> tuple[Client, str]:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/")
    return client, client.cookies["csrftoken"].value


def test_a_switchover_with_a_reason_is_done_audited_and_reported(admin_user, mb_link):
    client, token = csrf_client(admin_user)

    response = client.post(
        f"/console/links/{mb_link.pk}/switchover/",
        {"reason": "patching routing-a-mb-1", "expected_epoch": "2", "csrfmiddlewaretoken": token},
        follow=True,
    )

    assert response.status_code == 200
    assert "switched over to routing-a-mb-2 (epoch 3)" in response.content.decode()
    assert Peer.objects.get(name="routing-a-mb-2").display_state == "connected"
    entry = AuditEntry.objects.get(action=AuditAction.LINK_SWITCHOVER)
    assert (entry.actor, entry.reason) == (admin_user, "patching routing-a-mb-1")
    event = FailoverEvent.objects.get(link=mb_link)
    assert (event.kind, event.actor) == (FailoverKind.MANUAL, admin_user)


def test_an_action_without_the_csrf_token_is_refused(admin_user, mb_link):
    client, _ = csrf_client(admin_user)

    response = client.post(f"/console/links/{mb_link.pk}/switchover/", {"reason": "no token"})

    assert response.status_code == 403
    assert not FailoverEvent.objects.exists()


def test_an_action_without_a_reason_is_refused_with_a_message(admin_client, mb_link):
    response = admin_client.post(f"/console/links/{mb_link.pk}/switchover/", {"reason": "   "}, follow=True)

    assert "not done: give a reason" in response.content.decode()
    assert not FailoverEvent.objects.exists()


def test_a_refused_switchover_shows_why(admin_client, mb_link):
    Peer.objects.filter(name="routing-a-mb-2").update(health=Health.DOWN)

    response = admin_client.post(f"/console/links/{mb_link.pk}/switchover/", {"reason": "try it"}, follow=True)

    html = response.content.decode()
    assert "refused: routing-a-mb-2 is not healthy (health: down); it cannot be connected." in html
    assert Peer.objects.get(name="routing-a-mb-1").display_state == "connected"


def test_a_stale_switchover_changes_nothing_and_says_so(admin_client, mb_link):
    response = admin_client.post(
        f"/console/links/{mb_link.pk}/switchover/", {"reason": "late click", "expected_epoch": "1"}, follow=True
    )

    assert "changed before your request arrived (now epoch 2); nothing was done" in response.content.decode()
    assert not FailoverEvent.objects.exists()


def test_maintenance_on_drains_the_connected_peer_and_off_releases_it(admin_user, mb_link):
    client, token = csrf_client(admin_user)
    primary = Peer.objects.get(name="routing-a-mb-1")

    on = client.post(
        f"/console/peers/{primary.pk}/maintenance/",
        {"on": "1", "reason": "firmware upgrade", "csrfmiddlewaretoken": token},
        follow=True,
    )

    assert "routing-a-mb-1 is in maintenance." in on.content.decode()
    assert Peer.objects.get(name="routing-a-mb-1").display_state == "maintenance"
    assert Peer.objects.get(name="routing-a-mb-2").display_state == "connected"
    assert AuditEntry.objects.filter(action=AuditAction.PEER_MAINTENANCE_ON, actor=admin_user).exists()

    off = client.post(
        f"/console/peers/{primary.pk}/maintenance/",
        {"on": "0", "reason": "upgrade done", "csrfmiddlewaretoken": token},
        follow=True,
    )

    assert "routing-a-mb-1 is out of maintenance." in off.content.decode()
    assert Peer.objects.get(name="routing-a-mb-1").display_state == "standby"
    entry = AuditEntry.objects.get(action=AuditAction.PEER_MAINTENANCE_OFF)
    assert entry.reason == "upgrade done"


def test_actions_answer_post_only(admin_client, mb_link):
    assert admin_client.get(f"/console/links/{mb_link.pk}/switchover/").status_code == 405
    assert admin_client.post("/console/links/999999/switchover/", {"reason": "x"}).status_code == 404


# --- Speed --------------------------------------------------------------------------------------


def queries_of(client: Client, url: str) -> int:
    shared_renders.clear()  # a render is measured, not a render shared by the watchers
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


@pytest.mark.parametrize("url", ["/", "/partials/overview/"])
def test_the_number_of_queries_does_not_grow_with_the_servers(admin_client, url):
    def add_servers(names: list[str]) -> None:
        for name in names:
            link = server_with_pairs(name)
            AlertFactory(server=link.server)
            FailoverEventFactory(
                server=link.server,
                link=link,
                from_peer=Peer.objects.get(name=f"{name}-mb-1"),
                to_peer=Peer.objects.get(name=f"{name}-mb-2"),
            )

    add_servers(["routing-a"])
    one = queries_of(admin_client, url)
    add_servers([f"routing-{n}" for n in range(2, 11)])
    ten = queries_of(admin_client, url)

    assert ten == one
    assert one <= 10
