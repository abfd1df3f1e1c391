"""Policy timers on sessions: transits not confirmed in time, calls hung up long ago.

Run by Celery beat (``sessions.requeue_expired_transits`` every second,
``sessions.end_hung_up_after_grace`` every five). Each candidate is changed by its own
compare-and-set service, so a run that overlaps another, or a session that changed
meanwhile, is harmless. ``now`` is a parameter so tests move time instead of sleeping.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.utils import timezone

from common.actors import POLICY
from failover.models import Policy
from sessions.choices import ROUTED_STATES, EndReason, PhoneLeg, SessionState
from sessions.models import CollaborationSession
from sessions.services.lifecycle import IllegalTransition, session_end
from sessions.services.routes import session_fail_transit, session_requeue

log = logging.getLogger(__name__)


def sessions_requeue_expired_transits(*, now: datetime | None = None) -> int:
    """Send back to the queue every session in transit for longer than
    ``Policy.transit_timeout_seconds`` (its route was never confirmed: the MB that took it
    failed, or is slow); return how many were requeued or ended.

    Each goes back to the head of its queue (``queued_at`` kept) with a
    ``session.requeued`` audit entry and a live update; on commit its route is released at
    the MB, its agent re-synced and the queue drained (``session_requeue``). When
    ``Policy.max_transit_attempts`` is set, the session whose route timed out that many
    times ends instead, with the reason ``transit_failed`` (a caller is not kept waiting
    for ever by routes nobody confirms).
    """
    now = now or timezone.now()
    policy = Policy.current()
    timeout = policy.transit_timeout_seconds
    deadline = now - timedelta(seconds=timeout)
    expired = CollaborationSession.objects.filter(state=SessionState.IN_TRANSIT, routed_at__lt=deadline)
    requeued = failed = 0
    for session_id, timeouts in expired.order_by("queued_at", "pk").values_list("pk", "transit_timeouts"):
        reason = f"route not confirmed within {timeout} s"
        if policy.max_transit_attempts is not None and timeouts + 1 >= policy.max_transit_attempts:
            note = f"{reason}, {timeouts + 1} times"
            if session_fail_transit(session_id=session_id, actor=POLICY, routed_before=deadline, note=note):
                failed += 1
        elif session_requeue(session_id=session_id, actor=POLICY, reason=reason, routed_before=deadline):
            requeued += 1
    if requeued or failed:
        log.info("transits not confirmed within %s s: %s requeued, %s ended", timeout, requeued, failed)
    return requeued + failed


def sessions_end_hung_up_after_grace(*, now: datetime | None = None) -> int:
    """When ``Policy.hung_up_grace_seconds`` is set, end the sessions whose caller hung up
    the phone longer ago than that, with the reason ``hangup_timeout``; return how many.

    Without the policy nothing ends: that is left to the agent (docs/product.md,
    'Caller hung up'). Ends through
    ``session_end`` (audit, live update, MB release on commit); a session ended meanwhile
    by its agent is skipped.
    """
    grace = Policy.current().hung_up_grace_seconds
    if grace is None:
        return 0
    now = now or timezone.now()
    due = CollaborationSession.objects.filter(
        state__in=ROUTED_STATES,
        phone_leg=PhoneLeg.HUNG_UP,
        phone_hung_up_at__lt=now - timedelta(seconds=grace),
    )
    count = 0
    for session_id in due.order_by("phone_hung_up_at", "pk").values_list("pk", flat=True):
        try:
            session_end(
                session_id=session_id,
                actor=POLICY,
                reason=EndReason.HANGUP_TIMEOUT,
                note=f"caller hung up more than {grace} s ago",
            )
        except (IllegalTransition, CollaborationSession.DoesNotExist):
            continue  # ended by its agent, or removed, since the query
        count += 1
    return count
