"""Celery tasks of the failover app: thin wrappers around services, safe to run twice.

Periodic ones expire before their next tick, so a busy or restarted worker never works
through a backlog of stale runs; the schedule itself is in settings (``CELERY_BEAT_SCHEDULE``).
"""

from __future__ import annotations

import logging

from celery import shared_task

from failover.services.failback import links_fail_back

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
