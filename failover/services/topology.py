"""Creating servers and their peers (used by configuration tools and seed_demo)."""

from __future__ import annotations

from django.db import transaction

from failover.choices import PeerKind, PeerPriority, ServerRole
from failover.models import Link, Peer, Server


@transaction.atomic
def server_ensure(
    *, name: str, role: ServerRole = ServerRole.ROUTING, base_url: str = "", description: str = ""
) -> Server:
    """Create the server if missing (else update its fields) and make sure both links exist.

    Idempotent: a server always has exactly one Media Blender link and one Admin
    Workstation link, even before any peer is configured.
    """
    server = Server.objects.select_for_update().filter(name=name).first() or Server(name=name)
    creating = server.pk is None
    server.role = role
    server.base_url = base_url
    server.description = description
    server.full_clean()
    # Only the configured fields: the monitor writes health columns at any moment, and a
    # full save would put back the values read above.
    server.save(update_fields=None if creating else ["role", "base_url", "description"])
    for kind in PeerKind.values:
        Link.objects.get_or_create(server=server, kind=kind)
    return server


@transaction.atomic
def peer_ensure(*, server: Server, kind: PeerKind, priority: PeerPriority, name: str, host: str, port: int) -> Peer:
    """Create or update the peer at (server, kind, priority). Never changes its connection."""
    peer = Peer.objects.filter(server=server, kind=kind, priority=priority).first() or Peer(
        server=server, kind=kind, priority=priority
    )
    creating = peer.pk is None
    peer.name = name
    peer.host = host
    peer.port = port
    peer.full_clean()
    peer.save(update_fields=None if creating else ["name", "host", "port"])
    Link.objects.get_or_create(server=server, kind=kind)
    return peer
