"""Celery beat as the monitor's watchdog.

Beat cannot schedule sub-second probes reliably, so it does not probe: every few seconds
it checks that *some* monitor holds a fresh lease. When none does (every web node down,
or monitors disabled), the worker that runs this task runs the monitor itself for a
bounded time, then returns; the next beat tick repeats the check. Correctness is the
lease's job; this only makes sure someone is watching.
"""

from __future__ import annotations

import asyncio
import logging

from celery import shared_task
from django.utils import timezone

from failover.models import Lease
from failover.monitor.monitor import LEASE_NAME, Monitor, default_holder
from failover.monitor.peer_events import dispatch_peer_event

log = logging.getLogger(__name__)

WATCHDOG_INTERVAL_SECONDS = 5.0
# A stand-in monitor runs this long per task, well inside the task's time limit.
STAND_IN_SECONDS = 50.0


def lease_is_fresh() -> bool:
    return Lease.objects.filter(name=LEASE_NAME, expires_at__gt=timezone.now()).exclude(holder="").exists()


@shared_task(
    name="failover.monitor_watchdog",
    time_limit=STAND_IN_SECONDS + 20,
    soft_time_limit=STAND_IN_SECONDS + 10,
    expires=WATCHDOG_INTERVAL_SECONDS,  # a tick not run in time is skipped, not piled up
    ignore_result=True,
)
def monitor_watchdog() -> str:
    """If no monitor holds the lease, run one here for ``STAND_IN_SECONDS``. Safe to run
    twice: a second stand-in simply fails to get the lease and returns."""
    if lease_is_fresh():
        return "a monitor is running"
    log.warning("no health monitor holds the lease; this worker stands in")
    asyncio.run(_stand_in(STAND_IN_SECONDS))
    return "stood in"


async def _stand_in(seconds: float) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    await Monitor(holder=f"worker:{default_holder()}", on_event=dispatch_peer_event).run(stop)
