"""Celery tasks of the failover app: thin wrappers around services, safe to run twice.

Periodic ones expire before their next tick, so a busy or restarted worker never works
through a backlog of stale runs; the schedule itself is in settings (``CELERY_BEAT_SCHEDULE``).
"""

from __future__ import annotations

import logging

from celery import shared_task

from failover.services.failback import links_fail_back
from failover.services.notifications import notification_attempt, notifications_resend_lost

logger = logging.getLogger(__name__)


# No result stored: it runs on a schedule and nobody reads it (the count is for tests).
@shared_task(name="failover.fail_back", time_limit=30, soft_time_limit=25, expires=25, ignore_result=True)
def fail_back() -> int:
    """Switch links back to their primary where the policy says so; return how many.

    Does nothing (and logs nothing) while ``Policy.fail_back_after_minutes`` is empty or
    no link qualifies. Each switchover is audited and broadcast by the service.
    """
    results = links_fail_back()
    for result in results:
        logger.info("failed back %s to epoch %s", result.link, result.link.epoch)
    return len(results)


# One task per delivery, one attempt per run: a slow receiver holds one worker slot for at
# most NOTIFY_HTTP_TIMEOUT_SECONDS and never delays another channel's deliveries. Celery's
# retry sends the next attempt with its countdown (the service says how long to wait).
@shared_task(
    bind=True,
    name="failover.notification_send",
    max_retries=None,
    time_limit=60,
    soft_time_limit=50,
    ignore_result=True,
)
def notification_send(self, delivery_pk: int, attempt: int = 0) -> None:
    wait = notification_attempt(delivery_pk, attempt)
    if wait is not None:
        raise self.retry(args=(delivery_pk, attempt + 1), countdown=wait)


@shared_task(
    name="failover.notifications_resend_lost", time_limit=30, soft_time_limit=25, expires=25, ignore_result=True
)
def resend_lost_notifications() -> int:
    """Safety net: send again the deliveries whose task was lost (Redis restarted)."""
    return notifications_resend_lost()
