"""Switchover: the one place that changes which peer of a pair is connected.

Every function here locks the link row first (``select_for_update``), then reads and
writes the pair's peers. That single lock order is what keeps concurrent workers from
deadlocking, and the database's partial unique index (one connected peer per pair) is
what keeps them from ever leaving two peers connected, whatever the interleaving.
Each change raises the link's epoch by one: the fencing token that makes a late write
(``expected_epoch`` no longer current) a no-op.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from common import live
from common.actors import MONITOR, Actor
from failover import hooks, oplog
from failover.choices import AuditAction, FailoverKind, Health, LinkState, PeerConnection
from failover.models import FailoverEvent, Link, Peer
from failover.services.audit import audit_record, check_reason
from failover.services.link_alerts import link_alerts_reconcile


class SwitchoverRefused(ValidationError):
    """A requested switchover cannot be done (target down, in maintenance, unknown)."""


@dataclass(frozen=True)
class SwitchoverResult:
    link: Link
    changed: bool
    outcome: str  # "switched", "restored", "down", "unchanged", "stale"
    event: FailoverEvent | None = None


def lock_link(link_id: int) -> Link:
    # of=("self",): PostgreSQL would otherwise also lock the joined server row, in no fixed
    # order with other writers' locks (a wizard interrupted by this switchover deadlocked).
    return Link.objects.select_for_update(of=("self",)).select_related("server").get(pk=link_id)


def pair_peers(link: Link) -> list[Peer]:
    return list(link.peers().order_by("priority"))


def first_eligible(peers: list[Peer], *, besides: Peer | None) -> Peer | None:
    return next((p for p in peers if p.is_eligible and (besides is None or p.pk != besides.pk)), None)


def _describe(peer: Peer | None) -> str | None:
    return peer.name if peer else None


def switch(
    link: Link,
    *,
    current: Peer | None,
    target: Peer | None,
    kind: FailoverKind,
    actor: Actor,
    reason: str,
    failed_at: datetime | None = None,
    detected_at: datetime | None = None,
    detection: str = "",
) -> SwitchoverResult:
    """Move the connection from ``current`` to ``target`` (either may be None), in the
    caller's transaction, with the link already locked."""
    now = timezone.now()
    before = {"connected": _describe(current), "epoch": link.epoch, "state": link.state}
    failure = caused_by_failure(current, kind)
    # Noted before anything moves: which sessions were open when the peer failed.
    work = hooks.work_at_failure(server=link.server) if failure else None
    _move(link, current=current, target=target, now=now)
    if target is None:
        kind, outcome = FailoverKind.LINK_DOWN, "down"
    elif current is None:
        kind = FailoverKind.LINK_RESTORED if kind == FailoverKind.AUTOMATIC else kind
        outcome = "restored"
    else:
        outcome = "switched"
    event = FailoverEvent.objects.create(
        server=link.server,
        link=link,
        kind=kind,
        from_peer=current,
        to_peer=target,
        epoch=link.epoch,
        reason=reason[:300],
        actor=actor if isinstance(actor, AbstractBaseUser) else None,
        failed_at=failed_at,
        detected_at=detected_at or now,
        completed_at=now,
        detection=detection,
        failure=failure,
    )
    if work is not None:
        work.record(event)
    after = {"connected": _describe(target), "epoch": link.epoch, "state": link.state}
    _log_switch(event, link, current=current, target=target)
    audit_record(
        actor=actor, action=AuditAction.LINK_SWITCHOVER, target=link, reason=reason, before=before, after=after
    )
    _publish_link_changed(link, current=current, target=target, kind=kind, reason=reason)
    # Sessions follow a newly connected Media Blender (agents, transits, queue); running
    # wizards are interrupted when the Admin Workstation link moves, and a Verify follows.
    hooks.link_switched(link, connected=target)
    return SwitchoverResult(link=link, changed=True, outcome=outcome, event=event)


def caused_by_failure(current: Peer | None, kind: FailoverKind) -> bool:
    """An automatic move away from a connected peer that is down (crashed, stalled, refused),
    not one asked for nor one away from a peer put into maintenance: an incident."""
    return (
        kind == FailoverKind.AUTOMATIC
        and current is not None
        and current.health == Health.DOWN
        and not current.in_maintenance
    )


def _move(link: Link, *, current: Peer | None, target: Peer | None, now: datetime) -> None:
    """The new epoch, the peers' connection flags and the link's state."""
    link.epoch += 1
    # Deactivate before activating: the unique index is checked per statement.
    if current is not None:
        Peer.objects.filter(pk=current.pk).update(
            connection=PeerConnection.STANDBY, connected_epoch=None, connected_at=None
        )
    if target is not None:
        Peer.objects.filter(pk=target.pk).update(
            connection=PeerConnection.CONNECTED, connected_epoch=link.epoch, connected_at=now
        )
    link.state = LinkState.CONNECTED if target else LinkState.DOWN
    link.state_changed_at = now
    link.last_switchover_at = now
    link.save(update_fields=["epoch", "state", "state_changed_at", "last_switchover_at"])


def _publish_link_changed(
    link: Link, *, current: Peer | None, target: Peer | None, kind: FailoverKind, reason: str
) -> None:
    live.publish(
        "link.changed",
        {
            "link": link.pk,
            "server": link.server.name,
            "kind": link.kind,
            "state": link.state,
            "epoch": link.epoch,
            "from_peer": _describe(current),
            "to_peer": _describe(target),
            "event": kind,
            "reason": reason,
        },
    )


def _log_switch(event: FailoverEvent, link: Link, *, current: Peer | None, target: Peer | None) -> None:
    """The switch as one structured log line, with its figures (failover/oplog.py)."""
    oplog.record(
        "switchover",
        f"{event.get_kind_display()} on {link.server.name} {link.kind}: "
        f"{_describe(current) or '-'} -> {_describe(target) or '-'} (epoch {link.epoch})",
        level=logging.WARNING if target is None else logging.INFO,
        kind=event.kind,
        server=link.server.name,
        link=link.kind,
        from_peer=_describe(current),
        to_peer=_describe(target),
        epoch=link.epoch,
        reason=event.reason,
        detection=event.detection or None,
        detected_at_once=event.detected_at_once if event.detection else None,
        detection_ms=oplog.ms(event.detection_seconds),
        switchover_ms=oplog.ms(event.switchover_seconds),
    )


@transaction.atomic
def link_reconcile(
    *,
    link_id: int,
    reason: str = "",
    actor: Actor = MONITOR,
    failed_at: datetime | None = None,
    detected_at: datetime | None = None,
    detection: str = "",
) -> SwitchoverResult:
    """Bring a link back to its rule: connected to an eligible peer whenever one exists.

    At the very first connection the primary is preferred (see ``awaiting_first_verdict``).
    Non-preemptive: a connected peer that is still healthy and not in maintenance stays
    connected even if a higher-priority peer is up. A connected peer that is no longer
    eligible is replaced by the other peer when that one is eligible, else the link goes
    *down*. A down link is connected to the first eligible peer. Idempotent: a link that
    already follows the rule is left unchanged (no event, no epoch change). Either way the
    link's alerts are brought in step with its state (link down, pair without redundancy,
    Media Blender without ICM: failover/services/link_alerts.py), in this transaction.
    """
    link = lock_link(link_id)
    result = _follow_rule(
        link, reason=reason, actor=actor, failed_at=failed_at, detected_at=detected_at, detection=detection
    )
    link_alerts_reconcile(result.link)
    return result


def _follow_rule(
    link: Link,
    *,
    reason: str,
    actor: Actor,
    failed_at: datetime | None,
    detected_at: datetime | None,
    detection: str,
) -> SwitchoverResult:
    """``link_reconcile``'s decision, on the locked ``link``."""
    peers = pair_peers(link)
    current = next((p for p in peers if p.is_connected), None)
    if current is not None and current.is_eligible:
        return SwitchoverResult(link=link, changed=False, outcome="unchanged")
    target = first_eligible(peers, besides=current)
    if current is None and target is not None and awaiting_first_verdict(link, peers, target):
        return SwitchoverResult(link=link, changed=False, outcome="unchanged")
    if current is None and target is None:
        if link.state != LinkState.DOWN:
            # A link without peers (or both never seen up) is down; no event needed.
            link.state, link.state_changed_at = LinkState.DOWN, timezone.now()
            link.save(update_fields=["state", "state_changed_at"])
        return SwitchoverResult(link=link, changed=False, outcome="unchanged")
    return switch(
        link,
        current=current,
        target=target,
        kind=FailoverKind.AUTOMATIC,
        actor=actor,
        reason=reason or _automatic_reason(current, target),
        failed_at=failed_at,
        detected_at=detected_at,
        detection=detection,
    )


def awaiting_first_verdict(link: Link, peers: list[Peer], target: Peer) -> bool:
    """At a link's very first connection, wait for a higher-priority peer not yet probed.

    Both peers come up within milliseconds of each other at start-up; without this the
    link would start on whichever answered first. Once the link has ever been connected
    (epoch > 0) the usual rule applies: the first peer back is connected.
    """
    return link.epoch == 0 and any(
        p.health == Health.UNKNOWN and not p.in_maintenance and p.priority < target.priority for p in peers
    )


def _automatic_reason(current: Peer | None, target: Peer | None) -> str:
    if current is None:
        return f"{target.name} is up; connecting it" if target else "no healthy peer"
    why = "in maintenance" if current.in_maintenance else f"health {current.health}"
    return f"{current.name} is {why}" + (f"; switched to {target.name}" if target else "; no healthy peer left")


@transaction.atomic
def link_switchover(
    *,
    link_id: int,
    actor: Actor,
    reason: str,
    to_peer_id: int | None = None,
    expected_epoch: int | None = None,
    kind: FailoverKind = FailoverKind.MANUAL,
) -> SwitchoverResult:
    """Switch a link to ``to_peer_id`` (default: the other peer) on request.

    Used for manual switchovers and fail-back. Refuses (``SwitchoverRefused``) a target
    that is unknown, down or in maintenance, and a blank reason. A request carrying an
    ``expected_epoch`` that is no longer current changes nothing (outcome ``stale``);
    switching to the peer that is already connected changes nothing (``unchanged``).
    """
    if not reason.strip():
        raise SwitchoverRefused({"reason": "Give a reason for the switchover."})
    reason = check_reason(reason)
    link = lock_link(link_id)
    if expected_epoch is not None and expected_epoch != link.epoch:
        return SwitchoverResult(link=link, changed=False, outcome="stale")
    peers = pair_peers(link)
    current = next((p for p in peers if p.is_connected), None)
    if to_peer_id is None:
        target = next((p for p in peers if current is None or p.pk != current.pk), None)
    else:
        target = next((p for p in peers if p.pk == to_peer_id), None)
        if target is None:
            raise SwitchoverRefused({"to_peer": f"Peer {to_peer_id} is not part of this link."})
    if target is None:
        raise SwitchoverRefused({"to_peer": "This link has no other peer to switch to."})
    if current is not None and target.pk == current.pk:
        return SwitchoverResult(link=link, changed=False, outcome="unchanged")
    if not target.is_eligible:
        why = "in maintenance" if target.in_maintenance else f"not healthy (health: {target.health})"
        raise SwitchoverRefused({"to_peer": f"{target.name} is {why}; it cannot be connected."})
    result = switch(link, current=current, target=target, kind=kind, actor=actor, reason=reason)
    # The newly connected Media Blender may be the one without an ICM side.
    link_alerts_reconcile(link)
    return result
