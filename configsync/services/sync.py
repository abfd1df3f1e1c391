"""Sync: apply exactly the approved rows of a Verify plan (docs/product.md, 'Verify and Sync').

* ``sync_plan_update``: approve rows and choose each one's direction (ICM → this server by
  default, or this server → ICM).
* ``sync_start``: refuses a run that is not waiting for a sync, a plan with no approved
  row, removals without the explicit second confirmation, and a **stale** plan (the ICM's
  ``config_version``, the AW link's epoch or this server's fingerprint changed since the
  verify: run a new verify); then takes the server's one-run slot (the database refuses a
  second busy run) and hands over to the Celery task ``failover.sync_apply``.
* ``sync_apply``: the rows in a safe order (creations of skill groups, then agents, then
  memberships added, enabled state, memberships removed, agents deleted, skill groups
  deleted), each ICM change a compare-and-set on the version the plan expects, each row's
  result recorded with live progress. Idempotent: a change already made counts as done,
  rows done are skipped, and an interrupted run can be started again. Ends with a report.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from common.actors import SYNC, Actor
from common.outbox import send_now
from configsync.services import icm, local_config
from configsync.services.verify import AGENT, MEMBERSHIP, SKILL_GROUP, SyncBusy, busy_run, publish_run
from failover.choices import AuditAction, SyncDirection, SyncRunState
from failover.models import SyncRun
from failover.peering import client
from failover.services.audit import audit_record, check_reason

log = logging.getLogger(__name__)

STARTABLE = (SyncRunState.PLANNED, SyncRunState.INTERRUPTED)
DONE, FAILED = "done", "failed"


SWITCHING_MESSAGE = "The Admin Workstation link is switching over: verify again after it."


class SyncRefused(Exception):
    """The run cannot be synced in its state (409)."""


class StalePlan(SyncRefused):
    """Either side changed since the verify: run a new one."""


class DeletionsNotConfirmed(ValidationError):
    """Approved rows remove something and the second confirmation was not given (400)."""


# --- Approval --------------------------------------------------------------------------------


@transaction.atomic
def sync_plan_update(*, run_id: int, rows: list[dict[str, Any]], actor: Actor) -> SyncRun:
    """Set ``approved`` and/or ``direction`` of the named rows (others unchanged)."""
    run = SyncRun.objects.select_for_update(of=("self",)).select_related("server").get(pk=run_id)
    if run.state not in STARTABLE:
        raise SyncRefused(f"Run {run.pk} is {run.get_state_display().lower()}: its plan can no longer be changed.")
    by_id = {row["id"]: row for row in run.plan}
    errors = []
    for change in rows:
        row = by_id.get(change.get("id"))
        if row is None:
            errors.append(f"No row {change.get('id')!r} in this plan.")
            continue
        if "direction" in change:
            if change["direction"] not in SyncDirection.values:
                errors.append(f"Row {row['id']}: direction must be one of {', '.join(SyncDirection.values)}.")
                continue
            if row["result"] is None or row["result"]["status"] != DONE:
                row["direction"] = change["direction"]
        if "approved" in change:
            row["approved"] = bool(change["approved"])
    if errors:
        raise ValidationError({"rows": errors})
    run.save(update_fields=["plan"])
    audit_record(
        actor=actor,
        action=AuditAction.SYNC_APPROVE,
        target=run,
        after={"approved": [{"id": r["id"], "direction": r["direction"]} for r in run.plan if r["approved"]]},
    )
    publish_run(run)
    return run


def pending_rows(run: SyncRun) -> list[dict[str, Any]]:
    """Approved rows not yet done, in the safe order."""
    rows = [r for r in run.plan if r["approved"] and (r["result"] is None or r["result"]["status"] != DONE)]
    return sorted(rows, key=_order)


def _fix(row: dict[str, Any]) -> dict[str, Any]:
    return row["fixes"][row["direction"]]


def _order(row: dict[str, Any]) -> int:
    op, kind = _fix(row)["op"], row["kind"]
    if op.startswith("create"):
        return {SKILL_GROUP: 0, AGENT: 1, MEMBERSHIP: 2}[kind]
    if op.startswith("set"):
        return 3
    return {MEMBERSHIP: 4, AGENT: 5, SKILL_GROUP: 6}[kind]


def removals(run: SyncRun) -> list[dict[str, Any]]:
    return [row for row in pending_rows(run) if _fix(row)["removal"]]


# --- Start -----------------------------------------------------------------------------------


def _staleness(run: SyncRun) -> str | None:
    """Why the plan no longer describes the two sides, or ``None``. Reads the ICM."""
    peer = icm.require_admin_workstation(run.server_id)
    if run.aw_epoch is not None and peer.epoch != run.aw_epoch:
        return f"the Admin Workstation link switched over since the verify (epoch {run.aw_epoch} → {peer.epoch})"
    with icm.AdminWorkstationClient(peer) as aw:
        version = aw.config_version()
    if version != run.icm_version:
        return f"the ICM configuration changed since the verify (version {run.icm_version} → {version})"
    if local_config.local_fingerprint(run.server_id) != run.local_fingerprint:
        return "this server's configuration changed since the verify"
    return None


@transaction.atomic
def _mark_stale(run_id: int, why: str, actor: Actor) -> SyncRun:
    run = SyncRun.objects.select_for_update().get(pk=run_id)
    run.state, run.finished_at, run.error = SyncRunState.STALE, timezone.now(), f"Stale plan: {why}."[:300]
    run.save(update_fields=["state", "finished_at", "error"])
    audit_record(actor=actor, action=AuditAction.SYNC_REFUSED, target=run, reason=run.error)
    publish_run(run)
    return run


def sync_start(*, run_id: int, actor: Actor, confirm_deletions: bool = False, reason: str = "") -> SyncRun:
    """Check the plan and take the run slot; the caller then runs ``sync_apply`` (the task).
    ``reason`` (the administrator's) goes to the audit history.

    Raises ``SyncRefused`` (wrong state), ``ValidationError`` (nothing approved),
    ``DeletionsNotConfirmed``, ``StalePlan`` (the run is marked stale), ``SyncBusy``, and
    ``client.PeerUnavailable`` when the ICM cannot be read to check the plan.
    """
    reason = check_reason(reason)
    run = SyncRun.objects.select_related("server").get(pk=run_id)
    if run.state not in STARTABLE:
        raise SyncRefused(f"Run {run.pk} is {run.get_state_display().lower()}; only a planned run can be synced.")
    if icm.link_switching(run.server_id):
        raise SyncRefused(SWITCHING_MESSAGE)
    rows = pending_rows(run)
    if not rows:
        raise ValidationError({"rows": "Approve at least one row of the plan before syncing."})
    if (removing := removals(run)) and not confirm_deletions:
        raise DeletionsNotConfirmed(
            {
                "confirm_deletions": f"{len(removing)} approved row(s) delete something "
                f"({'; '.join(_fix(r)['text'] for r in removing[:5])}): confirm the deletions to go on."
            }
        )
    if why := _staleness(run):
        _mark_stale(run.pk, why, actor)
        raise StalePlan(f"The plan is stale: {why}. Run a new verify.")
    try:
        with transaction.atomic():
            run = SyncRun.objects.select_for_update(of=("self",)).select_related("server").get(pk=run_id)
            if run.state not in STARTABLE:
                raise SyncRefused(f"Run {run.pk} is {run.get_state_display().lower()} now.")
            approved = [r for r in run.plan if r["approved"]]
            run.state, run.finished_at, run.error = SyncRunState.SYNCING, None, ""
            run.progress_total = len(approved)
            run.progress_done = sum(1 for r in approved if r["result"] and r["result"]["status"] == DONE)
            run.save(update_fields=["state", "finished_at", "error", "progress_total", "progress_done"])
    except IntegrityError:
        raise SyncBusy(run.server, busy_run(run.server_id)) from None
    with transaction.atomic():
        audit_record(
            actor=actor,
            action=AuditAction.SYNC_APPLY,
            target=run,
            reason=reason,
            after={"rows": [r["id"] for r in pending_rows(run)], "confirm_deletions": confirm_deletions},
        )
        publish_run(run)
    return run


def sync_launch(*, run_id: int, actor: Actor, confirm_deletions: bool = False, reason: str = "") -> SyncRun:
    """``sync_start``, then the Celery task ``failover.sync_apply`` applies the rows."""
    run = sync_start(run_id=run_id, actor=actor, confirm_deletions=confirm_deletions, reason=reason)
    if not send_now("failover.sync_apply", run.pk):
        # Not queued: give the one-run slot back rather than leave the run "syncing".
        return _finish(
            run.pk, SyncRunState.INTERRUPTED, "The sync could not be queued: the broker is unreachable.", actor
        )
    return SyncRun.objects.get(pk=run.pk)


# --- Apply -----------------------------------------------------------------------------------


class _Stop(Exception):
    def __init__(self, state: SyncRunState, message: str) -> None:
        super().__init__(message)
        self.state, self.message = state, message


def _apply_icm(aw: icm.AdminWorkstationClient, run: SyncRun, row: dict[str, Any]) -> str:
    op, data, kind = _fix(row)["op"], row["data"], row["kind"]
    if kind == SKILL_GROUP:
        call = ("create_skill_group", {"skill_group_id": data["skill_group_id"], "name": data["name"]})
        if op == "delete_icm":
            call = ("delete_skill_group", {"skill_group_id": data["skill_group_id"]})
    elif kind == AGENT:
        call = (
            "create_agent",
            {
                "agent_id": data["agent_id"],
                "name": data["name"][:200] or data["agent_id"],
                "enabled": data["enabled"],
                "skill_groups": data["skill_groups"],
            },
        )
        if op == "delete_icm":
            call = ("delete_agent", {"agent_id": data["agent_id"]})
    elif kind == MEMBERSHIP:
        name = "add_membership" if op == "create_icm" else "remove_membership"
        call = (name, {"agent_id": data["agent_id"], "skill_group_id": data["skill_group_id"]})
    else:
        call = ("update_agent", {"agent_id": data["agent_id"], "enabled": data["local"]})
    name, args = call
    try:
        run.icm_version = aw.change(name, expected_version=run.icm_version, **args)
    except client.PeerError as exc:
        if exc.code == "version_mismatch":
            raise _Stop(
                SyncRunState.STALE, "The ICM configuration changed during the sync (someone else wrote to it)."
            ) from exc
        already = (exc.code == "conflict" and name in ("create_skill_group", "create_agent", "add_membership")) or (
            exc.code == "not_found" and name in ("delete_skill_group", "delete_agent", "remove_membership")
        )
        if already:
            return f"already so in the ICM ({exc.message})"
        raise
    return f"done (ICM version {run.icm_version})"


def _apply_local(run: SyncRun, row: dict[str, Any], actor: Actor) -> str:
    op, data, kind, server_id = _fix(row)["op"], row["data"], row["kind"], run.server_id
    if kind == SKILL_GROUP:
        if op == "create_local":
            changed = local_config.skill_group_create(
                server_id=server_id, icm_id=data["skill_group_id"], name=data["name"]
            )[1]
        else:
            changed = local_config.skill_group_delete(server_id=server_id, icm_id=data["skill_group_id"])
    elif kind == AGENT:
        if op == "create_local":
            changed = local_config.agent_create(
                server_id=server_id,
                icm_id=data["agent_id"],
                name=data["name"],
                enabled=data["enabled"],
                skill_groups=data["skill_groups"],
            )[1]
        else:
            changed = local_config.agent_delete(server_id=server_id, icm_id=data["agent_id"])
    elif kind == MEMBERSHIP:
        changed = local_config.membership_set(
            server_id=server_id,
            icm_id=data["agent_id"],
            skill_group=data["skill_group_id"],
            member=op == "create_local",
        )
    else:
        changed = local_config.agent_set_enabled(
            server_id=server_id, icm_id=data["agent_id"], enabled=data["icm"], actor=actor
        )
    return "done" if changed else "already so here"


def _save_row(run_id: int, row_id: str, status: str, message: str, actor: Actor, **fields: Any) -> SyncRun:
    with transaction.atomic():
        run = SyncRun.objects.select_for_update().get(pk=run_id)
        row = next(r for r in run.plan if r["id"] == row_id)
        row["result"] = {"status": status, "message": message[:300], "at": timezone.now().isoformat()}
        run.progress_done += 1
        for name, value in fields.items():
            setattr(run, name, value)
        run.save(update_fields=["plan", "progress_done", *fields])
        audit_record(
            actor=actor,
            action=AuditAction.SYNC_ROW,
            target=run,
            reason=message,
            after={"row": row_id, "direction": row["direction"], "status": status},
        )
        publish_run(run)
    return run


def _finish(run_id: int, state: SyncRunState, error: str, actor: Actor) -> SyncRun:
    with transaction.atomic():
        run = SyncRun.objects.select_for_update().get(pk=run_id)
        approved = [r for r in run.plan if r["approved"]]
        results = [r["result"]["status"] if r["result"] else "not done" for r in approved]
        run.state, run.finished_at, run.error = state, timezone.now(), error[:300]
        run.report = {
            **run.report,
            "finished_at": run.finished_at.isoformat(),
            "outcome": state,
            "approved": len(approved),
            "done": results.count(DONE),
            "failed": results.count(FAILED),
            "not_done": results.count("not done"),
            "not_approved": len(run.plan) - len(approved),
            "rows": [
                {
                    "id": r["id"],
                    "fix": _fix(r)["text"],
                    "status": r["result"]["status"] if r["result"] else "not done",
                    "message": r["result"]["message"] if r["result"] else "",
                }
                for r in approved
            ],
            "next": "Run Verify again to confirm that both sides agree."
            if state == SyncRunState.COMPLETED
            else "Run a new verify, then sync what is left.",
        }
        run.save(update_fields=["state", "finished_at", "error", "report"])
        audit_record(actor=actor, action=AuditAction.SYNC_REPORT, target=run, reason=error, after=run.report)
        publish_run(run)
    return run


def sync_apply(*, run_id: int, actor: Actor = SYNC) -> SyncRun:
    """Apply the approved rows of a *syncing* run (see the module's docstring).

    Whatever happens, the run leaves *syncing* (an unexpected error ends it *failed*), so
    the server's one-run slot is never held by a dead run.
    """
    try:
        return _sync_apply(run_id, actor)
    except Exception as exc:
        if SyncRun.objects.filter(pk=run_id, state=SyncRunState.SYNCING).exists():
            _finish(run_id, SyncRunState.FAILED, f"Internal error: {exc!r}", actor)
        raise


def _sync_apply(run_id: int, actor: Actor) -> SyncRun:
    run = SyncRun.objects.select_related("server").get(pk=run_id)
    if run.state != SyncRunState.SYNCING:
        return run
    rows = pending_rows(run)
    try:
        peer = icm.require_admin_workstation(run.server_id)
        if peer.epoch != run.aw_epoch:
            raise _Stop(SyncRunState.STALE, "The Admin Workstation link switched over since the verify.")
        with icm.AdminWorkstationClient(peer) as aw:
            for row in rows:
                try:
                    if _fix(row)["op"].endswith("_icm"):
                        if icm.link_epoch(run.server_id) != run.aw_epoch:
                            raise _Stop(SyncRunState.INTERRUPTED, "The Admin Workstation link switched over.")
                        message = _apply_icm(aw, run, row)
                        run = _save_row(run_id, row["id"], DONE, message, actor, icm_version=run.icm_version)
                    else:
                        run = _apply_local_row(run, row, actor)
                except client.PeerError as exc:
                    run = _save_row(run_id, row["id"], FAILED, f"The ICM refused: {exc.code}: {exc.message}", actor)
                except ValidationError as exc:
                    run = _save_row(run_id, row["id"], FAILED, f"Refused here: {' '.join(exc.messages)}", actor)
    except _Stop as stop:
        return _finish(run_id, stop.state, stop.message, actor)
    except client.PeerUnavailable as exc:
        return _finish(run_id, SyncRunState.INTERRUPTED, f"The Admin Workstation stopped answering: {exc}", actor)
    return _finish(run_id, SyncRunState.COMPLETED, "", actor)


def _apply_local_row(run: SyncRun, row: dict[str, Any], actor: Actor) -> SyncRun:
    """A local fix, in one transaction with its result; the fingerprint follows our own change."""
    with transaction.atomic():
        locked = SyncRun.objects.select_for_update().get(pk=run.pk)
        if local_config.local_fingerprint(run.server_id) != locked.local_fingerprint:
            raise _Stop(SyncRunState.STALE, "This server's configuration changed during the sync.")
        try:
            with transaction.atomic():
                message = _apply_local(run, row, actor)
        except ValidationError as exc:
            status, message = FAILED, f"Refused here: {' '.join(exc.messages)}"
        else:
            status = DONE
        return _save_row(
            run.pk,
            row["id"],
            status,
            message,
            actor,
            local_fingerprint=local_config.local_fingerprint(run.server_id),
            icm_version=run.icm_version,
        )
