"""Celery tasks of the sessions app: thin wrappers around services, safe to run twice.

They take ids, return quietly when the row is gone, and expire instead of piling up: a
drain or a sync that waited a minute in the queue is superseded by a newer one anyway.
The Media Blender is reached only from here (through the services), never from a request
or a transaction. Periodic ones are in ``CELERY_BEAT_SCHEDULE``.
"""

from __future__ import annotations

import logging

from celery import shared_task

from common.task_retry import RETRY_TRANSIENT
from failover.models import Server
from sessions.choices import AgentState, SessionState
from sessions.models import Agent, CollaborationSession
from sessions.services.drain import drain_started, queue_drain
from sessions.services.media_blender import agent_sync, agents_reconcile, route_release
from sessions.services.phone_tracking import (
    sessions_end_phone_untracked_after_grace,
    sessions_mark_all_phone_untracked,
    sessions_mark_phone_untracked,
)
from sessions.services.routes import free_agent_exists
from sessions.services.samples import sample_record
from sessions.services.server_drain import sessions_end_past_drain_deadline
from sessions.services.switchover_followup import after_media_blender_switchover as switchover_followup
from sessions.services.timeouts import sessions_end_hung_up_after_grace, sessions_requeue_expired_transits

logger = logging.getLogger(__name__)

# A database that is briefly unavailable (a PostgreSQL restart, SQLite busy) is retried;
# a Media Blender that does not answer is not: the services already gave up cleanly and
# the next event or switchover redoes the work.
# Transient database and Redis errors: common.task_retry.RETRY_TRANSIENT (bounded, with back-off).
RETRY = RETRY_TRANSIENT


@shared_task(name="sessions.drain_queue", time_limit=60, soft_time_limit=50, expires=60, ignore_result=True, **RETRY)
def drain_queue(server_id: int) -> int:
    """Route the server's queued sessions through its connected MB, oldest first; return how many."""
    if not Server.objects.filter(pk=server_id).exists():
        drain_started(server_id)
        return 0
    if not free_agent_exists(server_id):
        # Every agent is busy: leave the "drain on its way" mark, so callers queuing now send
        # no task each (at a few hundred a second the worker did nothing but these). The
        # change that frees an agent drains by itself (release_route, sync_agent), and any
        # drain clears the mark when it starts; the mark also expires in seconds.
        return 0
    return queue_drain(server_id=server_id)


@shared_task(name="sessions.sync_agent", time_limit=30, soft_time_limit=25, expires=60, ignore_result=True, **RETRY)
def sync_agent(agent_id: int) -> bool:
    """Tell the connected MB the agent's state and slots; a ready agent may take work, so drain."""
    server_id = Agent.objects.filter(pk=agent_id).values_list("server_id", flat=True).first()
    if server_id is None:
        return False
    synced = agent_sync(agent_id=agent_id)
    if synced and Agent.objects.filter(pk=agent_id, state=AgentState.READY).exists():
        queue_drain(server_id=server_id)
    return synced


@shared_task(name="sessions.release_route", time_limit=30, soft_time_limit=25, expires=300, ignore_result=True, **RETRY)
def release_route(session_id: str, server_id: int) -> int:
    """Release the session's route at the server's MBs (a slot is free), then drain the queue.

    The drain is here, not a separate task, so it cannot run before the slot is free.
    """
    if not Server.objects.filter(pk=server_id).exists():
        return 0
    released = route_release(session_id=session_id, server_id=server_id)
    queue_drain(server_id=server_id)
    return released


@shared_task(
    name="sessions.after_media_blender_switchover",
    time_limit=120,
    soft_time_limit=100,
    expires=300,
    ignore_result=True,
    **RETRY,
)
def after_media_blender_switchover(link_id: int, epoch: int) -> bool:
    """Re-register the agents with the newly connected MB, re-ask it for the sessions in
    transit, drain the queue. Does nothing if the link has switched again since ``epoch``."""
    return switchover_followup(link_id=link_id, epoch=epoch) is not None


# Periodic: no result stored, and each run expires before the next tick.
@shared_task(name="sessions.requeue_expired_transits", time_limit=30, soft_time_limit=25, expires=1, ignore_result=True)
def requeue_expired_transits() -> int:
    """Put back at the head of the queue the sessions whose route was not confirmed in time."""
    return sessions_requeue_expired_transits()


@shared_task(name="sessions.mark_phone_untracked", time_limit=60, soft_time_limit=50, ignore_result=True, **RETRY)
def mark_phone_untracked(link_id: int) -> int:
    """After a Media Blender switchover: the old MB's calls get the phone state unknown."""
    return sessions_mark_phone_untracked(link_id=link_id)


@shared_task(name="sessions.phone_untracked_sweep", time_limit=30, soft_time_limit=25, expires=5, ignore_result=True)
def phone_untracked_sweep() -> int:
    """Safety net for a lost marking message, then the policy's grace (if set): sessions
    whose phone state has been unknown too long end as ``phone_untracked``."""
    sessions_mark_all_phone_untracked()
    return sessions_end_phone_untracked_after_grace()


@shared_task(name="sessions.end_hung_up_after_grace", time_limit=30, soft_time_limit=25, expires=5, ignore_result=True)
def end_hung_up_after_grace() -> int:
    """End the sessions whose caller hung up longer ago than the policy's grace (if set)."""
    return sessions_end_hung_up_after_grace()


@shared_task(name="sessions.drain_deadlines", time_limit=60, soft_time_limit=50, expires=5, ignore_result=True)
def drain_deadlines() -> int:
    """Hand on what was queued on draining servers; end what is open past a drain's deadline."""
    return sessions_end_past_drain_deadline()


@shared_task(name="sessions.drain_all", time_limit=60, soft_time_limit=50, expires=10, ignore_result=True)
def drain_all() -> int:
    """Safety net: drain every server that has queued sessions.

    Drains normally follow events (a request, a ready agent, a freed slot, a switchover);
    this catches the one whose message was lost or whose worker died mid-drain. A queue
    that waits may also wait on the Media Blender's copy of the agents (a release of an
    ended session's route lost with its task): the agents are reconciled with it first.
    """
    server_ids = list(
        CollaborationSession.objects.filter(state=SessionState.QUEUED).values_list("server_id", flat=True).distinct()
    )
    for server_id in server_ids:
        agents_reconcile(server_id=server_id)
    return sum(queue_drain(server_id=server_id) for server_id in server_ids)


@shared_task(name="sessions.record_sample", time_limit=10, soft_time_limit=8, expires=9, ignore_result=True)
def record_sample() -> int:
    """Sample the session counts for the overview's chart (and prune a day-old history)."""
    return sample_record().pk
