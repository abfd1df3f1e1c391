"""The alerts a link's state implies, kept in step with it by every service that changes it.

One rule decides them (:func:`link_alerts_implied`, a pure function of the link and its
pair); :func:`link_alerts_reconcile` raises what the rule wants and is not open yet, and
clears what is open and no longer wanted. The services that change a pair (a peer's
health, a switchover, maintenance, the Media Blender's ICM side) call it last, inside
their transaction and with the link locked, so an alert is never out of step with the
state that was committed with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.actors import MONITOR
from failover.choices import AlertKind, AlertSeverity, Health, IcmSide, PeerKind
from failover.models import Alert, Link, Peer
from failover.services.alerts import alert_clear, alert_raise

LINK_ALERT_KINDS = (AlertKind.LINK_DOWN, AlertKind.REDUNDANCY_LOST, AlertKind.MB_WITHOUT_ICM)


@dataclass(frozen=True)
class ImpliedAlert:
    severity: AlertSeverity
    message: str


def _trouble(peer: Peer) -> str:
    if peer.in_maintenance:
        return f"{peer.name} in maintenance"
    return f"{peer.name} {'down' if peer.health == Health.DOWN else 'not yet probed'}"


def link_alerts_implied(link: Link, peers: list[Peer]) -> dict[AlertKind, ImpliedAlert]:
    """What the pair's state says, by alert kind:

    * *link down* (critical): no peer connected, and no peer is still awaiting its first
      verdict (at start-up both are unknown for a moment: that is not a lost link);
    * *pair without redundancy* (warning): a pair of two whose peer other than the
      connected one is down or in maintenance; it stays open while the link is down;
    * *Media Blender without ICM* (critical): the connected Media Blender said it has no
      ICM side (a side not reported yet since it came up is not known, not "none").
    """
    what = link.get_kind_display()
    connected = next((peer for peer in peers if peer.is_connected), None)
    awaiting = any(peer.health == Health.UNKNOWN and not peer.in_maintenance for peer in peers)
    lost = [peer for peer in peers if not peer.is_connected and (peer.in_maintenance or peer.health == Health.DOWN)]
    implied: dict[AlertKind, ImpliedAlert] = {}
    if connected is None and not awaiting:
        detail = ", ".join(_trouble(peer) for peer in peers) or "no peer configured"
        implied[AlertKind.LINK_DOWN] = ImpliedAlert(
            AlertSeverity.CRITICAL, f"{what} link down: no healthy peer ({detail})"
        )
    if len(peers) >= 2 and lost:
        who = "standby " if connected is not None else ""
        implied[AlertKind.REDUNDANCY_LOST] = ImpliedAlert(
            AlertSeverity.WARNING,
            f"{what} pair without redundancy: {who}{', '.join(_trouble(peer) for peer in lost)}",
        )
    if (
        link.kind == PeerKind.MEDIA_BLENDER
        and connected is not None
        and connected.icm_side == IcmSide.NONE
        and connected.icm_side_reported_at is not None
    ):
        implied[AlertKind.MB_WITHOUT_ICM] = ImpliedAlert(
            AlertSeverity.CRITICAL, f"Media Blender {connected.name} reports no ICM connection (side A or B)"
        )
    return implied


def _why_cleared(kind: AlertKind, peers: list[Peer]) -> str:
    connected = next((peer for peer in peers if peer.is_connected), None)
    if kind == AlertKind.LINK_DOWN:
        return f"{connected.name} connected" if connected else "no longer down"
    if kind == AlertKind.REDUNDANCY_LOST:
        return "both peers healthy and out of maintenance" if connected else "no standby lost"
    if connected is None:
        return "no Media Blender connected"
    if connected.icm_side:
        return f"{connected.name} on ICM side {connected.icm_side}"
    return f"{connected.name} connected, its ICM side not reported yet"


def link_alerts_reconcile(link: Link) -> None:
    """Raise and clear the link's alerts to match its committed state. Call it inside the
    transaction that changed the pair, with the link locked (``lock_link``).

    The system raises and clears them (``system:monitor`` in the audit history), whoever
    changed the pair: the alert follows a state, and the person's action that led to it
    (a maintenance, a switchover) has its own audit entry in the same transaction."""
    peers = list(link.peers().order_by("priority"))
    implied = link_alerts_implied(link, peers)
    open_alerts = {alert.kind: alert for alert in Alert.objects.filter(link=link, cleared_at__isnull=True)}
    for kind in LINK_ALERT_KINDS:
        wanted, current = implied.get(kind), open_alerts.get(kind)
        if wanted is not None and (
            current is None or (current.message, current.severity) != (wanted.message, wanted.severity)
        ):
            alert_raise(
                server=link.server,
                link=link,
                kind=kind,
                message=wanted.message,
                severity=wanted.severity,
                actor=MONITOR,
            )
        elif wanted is None and current is not None:
            alert_clear(server=link.server, link=link, kind=kind, actor=MONITOR, reason=_why_cleared(kind, peers))
