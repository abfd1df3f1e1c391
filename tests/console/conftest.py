"""Fixtures of the console's tests."""

from __future__ import annotations

import pytest

from failover.choices import Health, PeerKind, PeerPriority
from failover.models import Link, Peer
from tests.factories import PeerFactory, ServerFactory, peer_mark_connected


@pytest.fixture
def pair():
    """routing-a with its Media Blender pair, the primary connected (the status socket's
    tests and the pushed fragments': a switchover of it is the event)."""
    server = ServerFactory(name="routing-a")
    primary = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.PRIMARY, name="mb-1")
    PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.SECONDARY, name="mb-2")
    Peer.objects.filter(server=server).update(health=Health.UP)
    peer_mark_connected(primary, epoch=3)
    return Link.objects.get(server=server, kind=PeerKind.MEDIA_BLENDER)
