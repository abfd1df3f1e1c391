"""Celery tasks of the configuration sync: thin wrappers around its services.

The task names keep their ``failover.`` prefix: they were sent under those names before
the configuration sync had a package of its own, and a message queued by the previous
release must still find its task.
"""

from __future__ import annotations

from celery import shared_task
from django.contrib.auth import get_user_model

from common.actors import SYNC, VERIFY, WIZARD
from configsync.services.sync import sync_apply as sync_apply_rows
from configsync.services.verify import verify_after_switchover, verify_execute
from configsync.services.wizards import wizard_run_all
from failover.models import SyncRun, WizardRun

# --- Wizards and Verify and Sync (issue 6) --------------------------------------------------
# Each takes ids and re-reads its row: a task delivered twice finds the run already moved on
# and returns. No autoretry: a run that stops half-way is interrupted, and re-running it is
# the administrator's decision (a new verify, then sync).


def _actor(user_id: int | None, fallback: str) -> object:
    if user_id is None:
        return fallback
    return get_user_model().objects.filter(pk=user_id).first() or fallback


@shared_task(name="failover.run_wizard", time_limit=300, soft_time_limit=280, ignore_result=True)
def run_wizard(run_id: int) -> str:
    """Run a wizard's remaining steps; returns its final state."""
    started_by = WizardRun.objects.filter(pk=run_id).values_list("started_by_id", flat=True).first()
    return wizard_run_all(run_id=run_id, actor=_actor(started_by, WIZARD)).state


@shared_task(name="failover.verify_existing", time_limit=120, soft_time_limit=100, ignore_result=True)
def verify_existing(run_id: int, user_id: int | None = None) -> str:
    """Execute a verify run created by ``verify_launch``; returns its state."""
    return verify_execute(run_id=run_id, actor=_actor(user_id, VERIFY)).state


@shared_task(name="failover.verify_config", time_limit=120, soft_time_limit=100, expires=300, ignore_result=True)
def verify_config(server_id: int, epoch: int | None = None) -> str | None:
    """The verify-only check after an Admin Workstation switchover (raises the alert on differences)."""
    run = verify_after_switchover(server_id=server_id, epoch=epoch)
    return run.state if run is not None else None


@shared_task(name="failover.sync_apply", time_limit=600, soft_time_limit=580, ignore_result=True)
def sync_apply(run_id: int) -> str:
    """Apply the approved rows of a syncing run; returns its final state."""
    started_by = SyncRun.objects.filter(pk=run_id).values_list("started_by_id", flat=True).first()
    return sync_apply_rows(run_id=run_id, actor=_actor(started_by, SYNC)).state
