"""Which Media Blender a session's phone leg went through, and what a switch away from it means.

The MB that confirms a route sets the phone leg up and is the only one that can report its
hang-up: a newly connected MB never heard of that call. So every session records the peer
and the link epoch of its phone leg (set on activation, ``routes.session_confirm_routes``),
and once the link moves past that epoch (a switchover, a failover after a crash or a stall,
the link going down) the phone state of those sessions becomes *unknown*, with the reason
in words. The agent is asked to end the web session when the call is over; an optional
policy (``Policy.phone_untracked_grace_seconds``, off by default, as the original design)
ends them after a grace time as ``phone_untracked``.

A hang-up that does arrive for such a session (the old MB, alive as a standby after a
manual switchover, still bridges its calls) still marks it "Caller hung up"
(``routes.session_phone_hung_up``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from common.actors import MONITOR, POLICY
from common.outbox import send_on_commit
from failover.choices import AuditAction, PeerConnection, PeerKind
from failover.models import Link, Peer, Policy
from failover.services.audit import audit_entry, audit_record_many
from sessions.choices import ROUTED_STATES, EndReason, PhoneLeg
from sessions.models import CollaborationSession
from sessions.services.lifecycle import IllegalTransition, publish_session, session_end

log = logging.getLogger(__name__)


def untracked_note(*, server_name: str, peer_name: str | None, at: datetime) -> str:
    """Why the phone state is unknown, as the agent and the administrator read it."""
    through = f"Media Blender {server_name}/{peer_name}" if peer_name else f"a Media Blender of {server_name}"
    return (
        f"The phone leg went through {through}, which was switched away from at "
        f"{at.astimezone(UTC):%H:%M:%S} UTC: a hang-up can no longer be reported."
    )


def after_link_switched(link: Link, *, connected: Peer | None) -> None:
    """``failover.hooks.link_switched``: once a Media Blender switchover (or the link going
    down) commits, mark the phone legs the old MB carried. Not in the switchover's own
    transaction: marking a thousand sessions (an audit entry each) took half a second on
    SQLite (bench/phone_untracked.py), which would hold the link's lock and delay the
    switchover that keeps routing going. A lost message is caught by the periodic sweep."""
    if link.kind == PeerKind.MEDIA_BLENDER:
        send_on_commit("sessions.mark_phone_untracked", link.pk)


@transaction.atomic
def sessions_mark_phone_untracked(*, link_id: int) -> int:
    """The phone leg of every open session of the link's server that was set up under an
    earlier link epoch is no longer followed: its MB was switched away from. Its phone
    state becomes unknown, with the reason; one audit entry per session, a live update each.
    Returns how many changed.

    Only connected phone legs change: one hung up stays hung up, a session in transit has
    none yet (the new MB is asked for it again). Idempotent and safe to run at any time,
    since what it marks follows from the link's current epoch alone (the sweep runs it).
    """
    link = Link.objects.select_related("server").filter(pk=link_id, kind=PeerKind.MEDIA_BLENDER).first()
    if link is None:
        return 0
    # Sessions activated before the phone epoch was recorded: their route epoch is the
    # epoch of the MB that confirmed them.
    set_up_before = Q(phone_epoch__lt=link.epoch) | Q(phone_epoch__isnull=True, route_epoch__lt=link.epoch)
    candidates = CollaborationSession.objects.filter(
        server_id=link.server_id, state__in=ROUTED_STATES, phone_leg=PhoneLeg.CONNECTED
    ).filter(set_up_before)
    affected = list(candidates.select_for_update().order_by("pk"))
    if not affected:
        return 0
    at = link.last_switchover_at or timezone.now()
    peers = Peer.objects.filter(server_id=link.server_id, kind=PeerKind.MEDIA_BLENDER)
    names = dict(peers.values_list("pk", "name"))
    connected = peers.filter(connection=PeerConnection.CONNECTED).values_list("name", flat=True).first()
    rows = []
    by_note: dict[str, list] = {}
    for session in affected:
        session.phone_leg = PhoneLeg.UNKNOWN
        session.phone_unknown_at = at
        session.phone_note = untracked_note(
            server_name=link.server.name, peer_name=names.get(session.phone_peer_id), at=at
        )
        by_note.setdefault(session.phone_note, []).append(session.pk)
        rows.append(
            audit_entry(
                actor=MONITOR,
                action=AuditAction.SESSION_PHONE_UNKNOWN,
                target=session,
                reason=session.phone_note,
                before={"phone_leg": PhoneLeg.CONNECTED, "phone_epoch": session.phone_epoch},
                after={"phone_leg": PhoneLeg.UNKNOWN, "epoch": link.epoch, "connected": connected},
            )
        )
    # One UPDATE per note (one per MB the phone legs went through), not a CASE per row.
    for note, ids in by_note.items():
        CollaborationSession.objects.filter(pk__in=ids).update(
            phone_leg=PhoneLeg.UNKNOWN, phone_unknown_at=at, phone_note=note
        )
    audit_record_many(rows)
    for session in affected:
        publish_session(session)
    log.info("%s: phone state of %s session(s) unknown (link epoch %s)", link, len(affected), link.epoch)
    return len(affected)


def sessions_mark_all_phone_untracked() -> int:
    """The sweep's half: :func:`sessions_mark_phone_untracked` for every Media Blender link
    with a candidate, so a marking whose message was lost is done within a beat tick."""
    links = Link.objects.filter(kind=PeerKind.MEDIA_BLENDER).values_list("pk", flat=True)
    return sum(sessions_mark_phone_untracked(link_id=link_id) for link_id in links)


def sessions_end_phone_untracked_after_grace(*, now: datetime | None = None) -> int:
    """When ``Policy.phone_untracked_grace_seconds`` is set, end the open sessions whose
    phone state has been unknown for longer than that, with the reason ``phone_untracked``;
    return how many. Off (the default): the agent ends them. Through ``session_end``
    (audit, live update, MB release on commit); one ended meanwhile is skipped."""
    grace = Policy.current().phone_untracked_grace_seconds
    if grace is None:
        return 0
    now = now or timezone.now()
    due = CollaborationSession.objects.filter(
        state__in=ROUTED_STATES, phone_leg=PhoneLeg.UNKNOWN, phone_unknown_at__lt=now - timedelta(seconds=grace)
    )
    count = 0
    for session_id in due.order_by("phone_unknown_at", "pk").values_list("pk", flat=True):
        try:
            session_end(
                session_id=session_id,
                actor=POLICY,
                reason=EndReason.PHONE_UNTRACKED,
                note=f"phone state unknown for more than {grace} s",
            )
        except (IllegalTransition, CollaborationSession.DoesNotExist):
            continue
        count += 1
    return count
