"""Creating and changing servers and their peers.

``server_ensure`` and ``peer_ensure`` are the idempotent set-up of configuration tools
and seed_demo; ``server_configure``, ``peer_configure`` and ``peer_remove`` are a
person's edits (the Django admin), each with a reason and audited with before/after.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from common.actors import Actor
from failover.choices import AuditAction, PeerKind, PeerPriority, ServerRole
from failover.models import Link, Peer, Server
from failover.services.configuration import config_apply, config_delete, require_reason

# What a person configures; everything else of a server or a peer is runtime state that
# only the monitor and the failover services write.
SERVER_FIELDS = ("name", "role", "base_url", "description")
PEER_FIELDS = ("kind", "priority", "name", "host", "port")


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


def _only(allowed: tuple[str, ...], changes: Mapping[str, Any]) -> dict[str, Any]:
    if unknown := sorted(set(changes) - set(allowed)):
        raise ValidationError({name: "Not a configurable field." for name in unknown})
    return dict(changes)


def _ensure_links(server: Server) -> None:
    for kind in PeerKind.values:
        Link.objects.get_or_create(server=server, kind=kind)


@transaction.atomic
def server_configure(*, server_id: int | None, actor: Actor, reason: str, changes: Mapping[str, Any]) -> Server:
    """Add a server (``server_id`` ``None``) or change its configured fields; both links
    always exist afterwards. Audited as ``server.created`` / ``server.changed``."""
    reason = require_reason(reason)
    changes = _only(SERVER_FIELDS, changes)
    if server_id is None:
        server, action = Server(), AuditAction.SERVER_CREATED
    else:
        server, action = Server.objects.select_for_update().get(pk=server_id), AuditAction.SERVER_CHANGED
    config_apply(obj=server, changes=changes, actor=actor, reason=reason, action=action)
    _ensure_links(server)
    return server


@transaction.atomic
def peer_configure(
    *, server_id: int, peer_id: int | None, actor: Actor, reason: str, changes: Mapping[str, Any]
) -> Peer:
    """Add a peer to the server (``peer_id`` ``None``) or change its address fields.

    Never its connection, health or maintenance (``peer_set_maintenance``). A connected
    peer keeps its kind: the database would refuse it, this says why first.
    """
    reason = require_reason(reason)
    changes = _only(PEER_FIELDS, changes)
    if peer_id is None:
        peer, action = Peer(server_id=server_id), AuditAction.PEER_CREATED
    else:
        peer = Peer.objects.select_for_update().get(pk=peer_id, server_id=server_id)
        action = AuditAction.PEER_CHANGED
        if peer.is_connected and changes.get("kind", peer.kind) != peer.kind:
            raise ValidationError({"kind": "This peer is connected: switch its link over before changing its kind."})
    config_apply(obj=peer, changes=changes, actor=actor, reason=reason, action=action)
    return peer


@transaction.atomic
def peer_remove(*, peer_id: int, actor: Actor, reason: str) -> None:
    """Delete a peer that is not connected, audited (``peer.deleted``) with its address."""
    reason = require_reason(reason)
    peer = Peer.objects.select_for_update().get(pk=peer_id)
    if peer.is_connected:
        raise ValidationError(f"{peer.name} is connected: switch its link over before deleting it.")
    config_delete(obj=peer, fields=PEER_FIELDS, actor=actor, reason=reason, action=AuditAction.PEER_DELETED)
