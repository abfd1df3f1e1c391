"""Maintenance: drain a peer (switch away from it) and keep it out until released."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from common import live
from common.actors import Actor
from failover.choices import AuditAction, FailoverKind
from failover.models import Link, Peer
from failover.services.audit import audit_record, check_reason
from failover.services.link_alerts import link_alerts_reconcile
from failover.services.switchover import (
    SwitchoverRefused,
    SwitchoverResult,
    first_eligible,
    link_reconcile,
    lock_link,
    pair_peers,
    switch,
)


def _link_of(peer_id: int) -> int:
    peer = Peer.objects.only("server_id", "kind").get(pk=peer_id)
    return Link.objects.values_list("pk", flat=True).get(server_id=peer.server_id, kind=peer.kind)


@transaction.atomic
def peer_set_maintenance(*, peer_id: int, on: bool, actor: Actor, reason: str) -> SwitchoverResult | None:
    """Put a peer into maintenance (draining it first) or take it out.

    Draining a connected peer switches its link to the other peer when that one is
    eligible, else the link goes down; both happen in this transaction, before the flag
    is set (the database refuses a connected peer in maintenance). Taking a peer out of
    maintenance reconnects a down link to it. Idempotent; returns the switchover if any.
    """
    if not reason.strip():
        raise SwitchoverRefused({"reason": "Give a reason for the maintenance change."})
    reason = check_reason(reason)
    link = lock_link(_link_of(peer_id))
    peer = Peer.objects.get(pk=peer_id)
    if peer.in_maintenance == on:
        return None
    result = None
    if on and peer.is_connected:
        target = first_eligible(pair_peers(link), besides=peer)
        result = switch(link, current=peer, target=target, kind=FailoverKind.MAINTENANCE, actor=actor, reason=reason)
    now = timezone.now()
    Peer.objects.filter(pk=peer.pk).update(
        in_maintenance=on, maintenance_reason=reason if on else "", maintenance_since=now if on else None
    )
    audit_record(
        actor=actor,
        action=AuditAction.PEER_MAINTENANCE_ON if on else AuditAction.PEER_MAINTENANCE_OFF,
        target=peer,
        reason=reason,
        before={"in_maintenance": not on},
        after={"in_maintenance": on},
    )
    live.publish("peer.changed", {"peer": peer.pk, "name": peer.name, "in_maintenance": on})
    if result is not None and result.changed:
        # The drain's switch saw the peer before its maintenance flag: judge the pair again.
        link_alerts_reconcile(link)
        return result
    # Either way the pair's choice may change: a peer leaving maintenance can reconnect a
    # down link, and one entering it (while not connected) can be what a starting pair
    # was waiting for before its standby may connect.
    why = f"{peer.name} left maintenance" if not on else f"{peer.name} went into maintenance"
    restored = link_reconcile(link_id=link.pk, reason=why)
    return restored if restored.changed else result
