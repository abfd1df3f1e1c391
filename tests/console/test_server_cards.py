"""The overview's server cards are rendered once per change of what they show
(console/server_cards.py), and a kept card is never shown for something it does not show.

The changes are made with ``QuerySet.update()`` on purpose: no save(), no signal, no event;
the only way a card can know is by what the overview's query reads.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.cache import caches
from django.test import Client

from common import roles
from failover.choices import Health, LinkState, PeerKind, PeerPriority
from failover.models import Link, Peer, Server
from failover.services.alert_actions import server_silence_start
from tests.console.kept_pieces import client_of, counting_renders
from tests.factories import PeerFactory, ServerFactory, SessionFactory

pytestmark = pytest.mark.django_db

CARD_TEMPLATE = "console/_server_card.html"


@pytest.fixture(autouse=True)
def no_cards_kept():
    caches["server_cards"].clear()


@pytest.fixture
def cards_rendered():
    """How many server cards were rendered (not taken from the cache) so far."""
    with counting_renders(CARD_TEMPLATE) as rendered:
        yield rendered


def overview(client: Client) -> str:
    page = client.get("/")
    assert page.status_code == 200
    return page.content.decode()


def card_of(page: str, server: Server) -> str:
    """The server's card in the page."""
    start = page.rindex("<article", 0, page.index(f'id="server-{server.pk}"'))
    return page[start : page.index("</article>", start)]


@pytest.fixture
def installation(db):
    """Three servers, each with its Media Blender pair (the primary connected) and ICM pair."""
    servers = []
    for n in range(3):
        server = ServerFactory(name=f"routing-{n}")
        for kind in (PeerKind.MEDIA_BLENDER, PeerKind.ADMIN_WORKSTATION):
            for priority, suffix in ((PeerPriority.PRIMARY, "1"), (PeerPriority.SECONDARY, "2")):
                PeerFactory(server=server, kind=kind, priority=priority, name=f"{server.name}-{kind}-{suffix}")
        Peer.objects.filter(server=server).update(health=Health.UP)
        Server.objects.filter(pk=server.pk).update(health=Health.UP)
        servers.append(server)
    return servers


def peer(server: Server, suffix: str = "1", kind: str = PeerKind.MEDIA_BLENDER) -> Peer:
    return Peer.objects.get(server=server, kind=kind, name__endswith=f"-{suffix}")


CHANGES = {
    "peer down": (
        lambda s: Peer.objects.filter(pk=peer(s, "2").pk).update(health=Health.DOWN),
        lambda s: f'id="peer-{peer(s, "2").pk}" data-peer="{peer(s, "2").name}" data-display-state="down"',
    ),
    "peer in maintenance": (
        lambda s: Peer.objects.filter(pk=peer(s, "2").pk).update(in_maintenance=True),
        lambda s: 'data-display-state="maintenance"',
    ),
    "peer latency": (
        lambda s: Peer.objects.filter(pk=peer(s).pk).update(last_latency_ms=12.5),
        lambda s: '<span class="num">12.5</span> ms',
    ),
    "peer renamed": (
        lambda s: Peer.objects.filter(pk=peer(s).pk).update(name="renamed-peer"),
        lambda s: 'data-peer="renamed-peer"',
    ),
    "link epoch": (
        lambda s: Link.objects.filter(server=s, kind=PeerKind.MEDIA_BLENDER).update(epoch=41),
        lambda s: 'data-epoch="41"',
    ),
    "link switching": (
        lambda s: Link.objects.filter(server=s, kind=PeerKind.ADMIN_WORKSTATION).update(state=LinkState.SWITCHING),
        lambda s: 'data-link-state="switching"',
    ),
    "server down": (
        lambda s: Server.objects.filter(pk=s.pk).update(health=Health.DOWN),
        lambda s: "server-card server-down",
    ),
    "server slow": (
        lambda s: Server.objects.filter(pk=s.pk).update(
            degraded_since=datetime(2026, 1, 2, 3, 4, tzinfo=UTC), degraded_reason="heartbeats late"
        ),
        lambda s: 'title="heartbeats late" data-degraded',
    ),
    "server draining": (
        lambda s: Server.objects.filter(pk=s.pk).update(
            drain_started_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC), drain_reason="kernel update"
        ),
        lambda s: "kernel update",
    ),
}


@pytest.mark.parametrize("change", CHANGES, ids=list(CHANGES))
def test_a_change_to_what_a_card_shows_is_on_the_next_render(installation, change: str) -> None:
    make, expected = CHANGES[change]
    client = client_of(roles.ADMINISTRATOR)
    changed, untouched = installation[1], installation[2]
    before = overview(client)
    assert expected(changed) not in card_of(before, changed)

    make(changed)
    after = overview(client)

    assert expected(changed) in card_of(after, changed)
    assert card_of(after, untouched) == card_of(before, untouched)


def test_a_silence_and_a_draining_servers_open_sessions_show_at_once(installation) -> None:
    server = installation[0]
    client = client_of(roles.ADMINISTRATOR)
    Server.objects.filter(pk=server.pk).update(drain_started_at=datetime(2026, 1, 2, tzinfo=UTC), drain_reason="r")
    session = SessionFactory(server=server)
    assert "1</span> session still open" in card_of(overview(client), server)

    SessionFactory(server=server)
    assert "2</span> sessions still open" in card_of(overview(client), server)

    type(session).objects.filter(server=server).delete()
    assert "Empty: safe to restart." in card_of(overview(client), server)

    server_silence_start(server_id=server.pk, minutes=30, actor="test", reason="planned work")
    silenced = card_of(overview(client), server)
    assert 'title="planned work">Alerts silenced until' in silenced

    # The same reason, a longer window: only the end differs.
    longer = server_silence_start(server_id=server.pk, minutes=90, actor="test", reason="planned work")
    assert longer.ends_at.isoformat() in card_of(overview(client), server)


def test_only_the_changed_card_is_rendered_again(installation, cards_rendered) -> None:
    client = client_of(roles.ADMINISTRATOR)
    overview(client)
    assert len(cards_rendered) == 3

    overview(client)
    assert len(cards_rendered) == 3  # nothing changed: every card kept

    Peer.objects.filter(pk=peer(installation[1]).pk).update(health=Health.DOWN)
    overview(client)
    assert len(cards_rendered) == 4  # that server's card alone


def test_readers_of_different_roles_never_share_a_card(installation, cards_rendered) -> None:
    """A viewer may not act: its cards have no buttons, even right after an administrator's."""
    server = installation[0]
    administrator, viewer = client_of(roles.ADMINISTRATOR), client_of(roles.VIEWER)

    assert 'data-action="/console/' in card_of(overview(administrator), server)
    assert "data-action=" not in card_of(overview(viewer), server)
    assert 'data-action="/console/' in card_of(overview(administrator), server)
    assert len(cards_rendered) == 6  # one set per access class, then kept


def test_each_time_zone_has_its_own_card(installation) -> None:
    server = installation[0]
    failed = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    Server.objects.filter(pk=server.pk).update(failed_at=failed)

    in_tokyo = card_of(overview(client_of(roles.VIEWER, "Asia/Tokyo")), server)
    in_utc = card_of(overview(client_of(roles.VIEWER)), server)

    assert ">2026-06-01 21:00:00 JST<" in in_tokyo
    assert ">2026-06-01 12:00:00 UTC<" in in_utc
    assert "JST" not in in_utc


def test_a_kept_card_is_the_card_rendered_now(installation) -> None:
    """After changes back and forth, the card from the cache is byte for byte the fresh one."""
    server = installation[2]
    client = client_of(roles.SUPERVISOR)
    first = overview(client)
    Peer.objects.filter(pk=peer(server).pk).update(in_maintenance=True, last_latency_ms=3.0)
    overview(client)
    Peer.objects.filter(pk=peer(server).pk).update(in_maintenance=False, last_latency_ms=None)
    kept = overview(client)

    caches["server_cards"].clear()
    fresh = overview(client)

    assert card_of(kept, server) == card_of(fresh, server) == card_of(first, server)
