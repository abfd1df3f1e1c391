from __future__ import annotations

import pytest
from django.utils import timezone

from failover.choices import Health, PeerKind, PeerPriority
from failover.models import Link, Peer
from failover.services.health import peer_health_changed
from tests.factories import PeerFactory


@pytest.fixture
def mb_pair(server):
    """A Media Blender pair, both peers up, the primary connected (as after start-up)."""
    primary = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.PRIMARY, name="mb-1")
    secondary = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.SECONDARY, name="mb-2")
    set_health(primary, Health.UP)
    set_health(secondary, Health.UP)
    link = Link.objects.get(server=server, kind=PeerKind.MEDIA_BLENDER)
    return link, primary, secondary


def set_health(peer: Peer, health: Health, **kwargs):
    return peer_health_changed(peer_id=peer.pk, health=health, at=timezone.now(), **kwargs)


def connected(link: Link) -> list[str]:
    return list(link.peers().filter(connection="connected").values_list("name", flat=True))
