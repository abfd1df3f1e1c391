"""Administrative wizards: add an agent, change an agent's skill groups, remove an agent,
add a skill group (docs/product.md, 'Admin Workstation failover and the wizards').

A wizard writes this server's database and the ICM (through the connected Admin
Workstation) one step at a time, with a step log. ``wizard_start`` validates, plans the
steps and records the AW link's epoch; ``wizard_step`` runs the next step; the Celery task
``failover.run_wizard`` runs them all. When the AW does not answer (``PeerUnavailable``)
or the link has switched over since the start (its epoch moved), the run is marked
*interrupted* at that step and every administrator gets the alert "Configuration may be
out of sync: run Verify and Sync". A switchover of the AW link also interrupts the
running wizards at once (``after_admin_workstation_switched``), even between two steps.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from common import live
from common.actors import MONITOR, WIZARD, Actor
from common.outbox import send_on_commit
from configsync.services import icm, local_config
from failover.choices import AlertKind, AlertSeverity, AuditAction, PeerKind, WizardKind, WizardState
from failover.models import Link, Policy, Server, WizardRun
from failover.peering import client
from failover.peering.client import ID_PATTERN
from failover.services.alerts import alert_raise
from failover.services.audit import audit_record, check_reason
from sessions.models import Agent, SkillGroup

log = logging.getLogger(__name__)

OUT_OF_SYNC_MESSAGE = "Configuration may be out of sync: run Verify and Sync"
LOCAL, ICM = "local", "icm"
PENDING, DONE, FAILED, INTERRUPTED = "pending", "done", "failed", "interrupted"


class WizardRefused(ValidationError):
    """The wizard cannot start now (no Admin Workstation connected); the input was fine."""


def run_payload(run: WizardRun) -> dict[str, Any]:
    return {
        "id": run.pk,
        "server": run.server_id,
        "kind": run.kind,
        "state": run.state,
        "current_step": run.current_step,
        "steps": len(run.step_log),
        "percent": progress_percent(run),
    }


def progress_percent(run: WizardRun) -> int:
    total = len(run.step_log)
    done = sum(1 for step in run.step_log if step["status"] == DONE)
    return 100 if total == 0 else round(100 * done / total)


def added_agent(run: WizardRun) -> Agent | None:
    """The agent a completed add-agent run created (with its user), if it still exists."""
    agent_id = run.params.get("agent_id") if isinstance(run.params, dict) else None
    if run.kind != WizardKind.ADD_AGENT or run.state != WizardState.COMPLETED or not agent_id:
        return None
    return Agent.objects.select_related("user").filter(server_id=run.server_id, icm_id=agent_id).first()


def _publish(run: WizardRun) -> None:
    live.publish("wizard.changed", run_payload(run))


# --- Planning ----------------------------------------------------------------------------


def _step(target: str, action: str, title: str, **args: Any) -> dict[str, Any]:
    return {"target": target, "action": action, "title": title, "args": args, "status": PENDING, "message": ""}


def _check_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise ValidationError(
            {field: "1 to 64 characters from A-Z a-z 0-9 _ . : @ -, starting with a letter or digit."}
        )
    return value


def _check_groups(server_id: int, groups: Any) -> list[str]:
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise ValidationError({"skill_groups": "A list of skill group ids."})
    known = set(SkillGroup.objects.filter(server_id=server_id, icm_id__in=groups).values_list("icm_id", flat=True))
    if unknown := sorted(set(groups) - known):
        raise ValidationError({"skill_groups": f"Unknown skill groups on this server: {', '.join(unknown)}."})
    return sorted(set(groups))


def _existing_agent(server_id: int, params: dict[str, Any]) -> Agent:
    agent_id = _check_id(params.get("agent_id"), "agent_id")
    agent = Agent.objects.filter(server_id=server_id, icm_id=agent_id).prefetch_related("skill_groups").first()
    if agent is None:
        raise ValidationError({"agent_id": f"No agent {agent_id} on this server."})
    return agent


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple):
        return any(_has_nul(item) for item in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


Plan = tuple[dict[str, Any], list[dict[str, Any]]]


def _plan_add_agent(server_id: int, params: dict[str, Any]) -> Plan:
    agent_id = _check_id(params.get("agent_id"), "agent_id")
    name = str(params.get("name") or "").strip()
    if not name or len(name) > 200:
        raise ValidationError({"name": "A name of 1 to 200 characters."})
    groups = _check_groups(server_id, params.get("skill_groups", []))
    enabled = bool(params.get("enabled", True))
    username = str(params.get("username") or agent_id).strip()[:150]
    if Agent.objects.filter(server_id=server_id, icm_id=agent_id).exists():
        raise ValidationError({"agent_id": f"Agent {agent_id} already exists on this server."})
    if Agent.objects.filter(user__username=username).exists():
        raise ValidationError({"username": f"User {username} is already an agent."})
    # The slots are fixed when the run is planned, so a policy change meanwhile cannot
    # make the step log say one thing and the agent get another.
    slots = Policy.current().agent_max_sessions
    clean = {
        "agent_id": agent_id,
        "name": name,
        "skill_groups": groups,
        "enabled": enabled,
        "username": username,
        "max_sessions": slots,
    }
    plural = "s" if slots != 1 else ""
    steps = [
        _step(LOCAL, "create_agent", f"Create agent {agent_id} on this server ({slots} session slot{plural})", **clean),
        _step(
            ICM, "create_agent", f"Create agent {agent_id} in the ICM", agent_id=agent_id, name=name, enabled=enabled
        ),
        *_membership_steps("add_membership", "Add {agent} to skill group {group} in the ICM", agent_id, groups),
    ]
    return clean, steps


def _membership_steps(action: str, title: str, agent_id: str, groups: list[str]) -> list[dict[str, Any]]:
    """One ICM step per skill group: ``title`` names ``{agent}`` and ``{group}``."""
    return [
        _step(ICM, action, title.format(agent=agent_id, group=g), agent_id=agent_id, skill_group_id=g) for g in groups
    ]


def _plan_change_agent_skills(server_id: int, params: dict[str, Any]) -> Plan:
    agent = _existing_agent(server_id, params)
    groups = _check_groups(server_id, params.get("skill_groups", []))
    before = sorted(g.icm_id for g in agent.skill_groups.all())
    added, removed = sorted(set(groups) - set(before)), sorted(set(before) - set(groups))
    if not added and not removed:
        raise ValidationError({"skill_groups": f"Agent {agent.icm_id} already has exactly these skill groups."})
    clean = {"agent_id": agent.icm_id, "skill_groups": groups, "before": before}
    steps = [
        _step(
            LOCAL,
            "set_skill_groups",
            f"Set the skill groups of {agent.icm_id} on this server",
            agent_id=agent.icm_id,
            skill_groups=groups,
        ),
        *_membership_steps("add_membership", "Add {agent} to {group} in the ICM", agent.icm_id, added),
        *_membership_steps("remove_membership", "Remove {agent} from {group} in the ICM", agent.icm_id, removed),
    ]
    return clean, steps


def _plan_remove_agent(server_id: int, params: dict[str, Any]) -> Plan:
    agent = _existing_agent(server_id, params)
    if held := agent.sessions.count():
        raise ValidationError(
            {"agent_id": f"Agent {agent.icm_id} has {held} session(s) in its history; it cannot be removed."}
        )
    clean = {"agent_id": agent.icm_id}
    steps = [
        _step(ICM, "delete_agent", f"Delete agent {agent.icm_id} from the ICM", agent_id=agent.icm_id),
        _step(LOCAL, "delete_agent", f"Delete agent {agent.icm_id} from this server", agent_id=agent.icm_id),
    ]
    return clean, steps


def _plan_add_skill_group(server_id: int, params: dict[str, Any]) -> Plan:
    group_id = _check_id(params.get("skill_group_id"), "skill_group_id")
    name = str(params.get("name") or "").strip()
    if not name or len(name) > 100:
        raise ValidationError({"name": "A name of 1 to 100 characters."})
    if SkillGroup.objects.filter(server_id=server_id, icm_id=group_id).exists():
        raise ValidationError({"skill_group_id": f"Skill group {group_id} already exists on this server."})
    if SkillGroup.objects.filter(server_id=server_id, name=name).exists():
        raise ValidationError({"name": f"A skill group named {name} already exists on this server."})
    clean = {"skill_group_id": group_id, "name": name}
    steps = [
        _step(LOCAL, "create_skill_group", f"Create skill group {group_id} on this server", **clean),
        _step(ICM, "create_skill_group", f"Create skill group {group_id} in the ICM", **clean),
    ]
    return clean, steps


# One planner per wizard: each validates its own fields and lists its steps in order.
_PLANNERS = {
    WizardKind.ADD_AGENT: _plan_add_agent,
    WizardKind.CHANGE_AGENT_SKILLS: _plan_change_agent_skills,
    WizardKind.REMOVE_AGENT: _plan_remove_agent,
    WizardKind.ADD_SKILL_GROUP: _plan_add_skill_group,
}


def plan_steps(server_id: int, kind: str, params: dict[str, Any]) -> Plan:
    """Validate ``params`` for ``kind``; return the cleaned params and the steps.

    Raises ``ValidationError`` (one message per field) for bad input.
    """
    # Text with a NUL cannot be stored by PostgreSQL (and no ICM name holds one): refuse it
    # here, for every caller, before any query sees it.
    for field, value in params.items():
        if _has_nul(value):
            raise ValidationError({field: "Null characters are not allowed."})
    planner = _PLANNERS.get(kind)
    if planner is None:
        raise ValidationError({"kind": f"Unknown wizard {kind!r}."})
    return planner(server_id, params)


# --- Running -----------------------------------------------------------------------------


@transaction.atomic
def wizard_start(*, server_id: int, kind: str, params: dict[str, Any], actor: Actor, reason: str) -> WizardRun:
    """Validate and plan a wizard run; no step is run yet (``wizard_step`` / the task do).

    ``reason`` (required, like every administrator's action) goes to the audit history.
    Refused (``WizardRefused``) while the server's AW link is down: the run would stop at
    its first ICM step.
    """
    if not reason.strip():
        raise ValidationError({"reason": "Say why you run this wizard (it goes to the audit history)."})
    reason = check_reason(reason)
    server = Server.objects.get(pk=server_id)
    clean, steps = plan_steps(server_id, kind, params)
    aw = icm.connected_admin_workstation(server_id)
    if aw is None:
        raise WizardRefused("No Admin Workstation is connected for this server: the ICM cannot be changed now.")
    run = WizardRun.objects.create(
        server=server,
        kind=kind,
        started_by=actor if not isinstance(actor, str | None) else None,
        started_at=timezone.now(),
        params=clean,
        step_log=steps,
        aw_epoch=aw.epoch,
    )
    audit_record(
        actor=actor,
        action=AuditAction.WIZARD_STARTED,
        target=run,
        reason=reason,
        after={"params": clean, "aw": aw.name},
    )
    _publish(run)
    return run


def wizard_launch(*, server_id: int, kind: str, params: dict[str, Any], actor: Actor, reason: str) -> WizardRun:
    """``wizard_start``, then the steps run in the Celery task ``failover.run_wizard``."""
    with transaction.atomic():
        run = wizard_start(server_id=server_id, kind=kind, params=params, actor=actor, reason=reason)
        send_on_commit("failover.run_wizard", run.pk)
    return run


def _lock(run_id: int) -> WizardRun:
    return WizardRun.objects.select_for_update(of=("self",)).select_related("server").get(pk=run_id)


def _record(run: WizardRun, index: int, status: str, message: str = "") -> None:
    step = run.step_log[index]
    step["status"], step["message"] = status, message[:300]
    step["at"] = timezone.now().isoformat()


@transaction.atomic
def wizard_interrupt(*, run_id: int, reason: str, actor: Actor = WIZARD) -> WizardRun:
    """Mark a running wizard interrupted at its current step and raise the out-of-sync alert."""
    run = _lock(run_id)
    if run.state != WizardState.RUNNING:
        return run
    index = min(run.current_step, len(run.step_log) - 1)
    if run.step_log and run.step_log[index]["status"] == PENDING:
        _record(run, index, INTERRUPTED, reason)
    run.state, run.finished_at, run.error = WizardState.INTERRUPTED, timezone.now(), reason[:300]
    run.save(update_fields=["state", "finished_at", "error", "step_log"])
    audit_record(
        actor=actor,
        action=AuditAction.WIZARD_INTERRUPTED,
        target=run,
        reason=reason,
        after={"step": index + 1, "title": run.step_log[index]["title"] if run.step_log else ""},
    )
    alert_raise(
        server=run.server,
        kind=AlertKind.CONFIG_OUT_OF_SYNC,
        message=OUT_OF_SYNC_MESSAGE,
        severity=AlertSeverity.WARNING,
        actor=actor,
    )
    _publish(run)
    return run


def _run_local(run: WizardRun, step: dict[str, Any], actor: Actor) -> str:
    args, server_id = step["args"], run.server_id
    action = step["action"]
    if action == "create_agent":
        _, created = local_config.agent_create(
            server_id=server_id,
            icm_id=args["agent_id"],
            name=args["name"],
            enabled=args["enabled"],
            skill_groups=args["skill_groups"],
            username=args["username"],
            # Runs planned before the slots were part of the plan take the policy's.
            max_sessions=args.get("max_sessions"),
        )
        return "created" if created else "already there"
    if action == "set_skill_groups":
        local_config.agent_set_skill_groups(
            server_id=server_id, icm_id=args["agent_id"], skill_groups=args["skill_groups"]
        )
        return "skill groups set"
    if action == "delete_agent":
        return "deleted" if local_config.agent_delete(server_id=server_id, icm_id=args["agent_id"]) else "already gone"
    if action == "create_skill_group":
        _, created = local_config.skill_group_create(
            server_id=server_id, icm_id=args["skill_group_id"], name=args["name"]
        )
        return "created" if created else "already there"
    raise ValueError(f"unknown local step {action}")


def _run_icm(peer: icm.AdminWorkstationPeer, step: dict[str, Any]) -> str:
    """One ICM change. A change that is already in the ICM counts as done (idempotent)."""
    action, args = step["action"], dict(step["args"])
    with icm.AdminWorkstationClient(peer) as aw:
        try:
            version = aw.change(action, **args)
        except client.PeerError as exc:
            already = (
                exc.code == "conflict" and action in ("create_agent", "create_skill_group", "add_membership")
            ) or (exc.code == "not_found" and action in ("delete_agent", "remove_membership"))
            if not already:
                raise
            return f"already done in the ICM ({exc.message})"
    return f"done on {peer.name} (ICM version {version})"


def wizard_step(*, run_id: int, actor: Actor = WIZARD) -> WizardRun:
    """Run the next step of a running wizard and record it in the step log.

    The ICM is reached outside any transaction. Before an ICM step the AW link's epoch is
    compared with the one recorded at the start: moved (switched over or down) means the
    run is interrupted there, as is an AW that does not answer. A refusal by the ICM or
    this server's database fails the run. The last step completes it.
    """
    run = WizardRun.objects.select_related("server").get(pk=run_id)
    if run.state != WizardState.RUNNING:
        return run
    index = run.current_step
    if index >= len(run.step_log):
        return _complete(run_id, actor)
    step = run.step_log[index]
    if step["target"] == ICM:
        peer = icm.connected_admin_workstation(run.server_id)
        epoch = icm.link_epoch(run.server_id)
        if peer is None or epoch != run.aw_epoch:
            why = "the Admin Workstation link is down" if peer is None else "the Admin Workstation link switched over"
            return wizard_interrupt(run_id=run_id, reason=f"Step {index + 1}: {why} (epoch {run.aw_epoch} → {epoch}).")
        try:
            message = _run_icm(peer, step)
        except client.PeerUnavailable as exc:
            return wizard_interrupt(
                run_id=run_id, reason=f"Step {index + 1}: the Admin Workstation {peer.name} did not answer ({exc})."
            )
        except client.PeerError as exc:
            return _fail(run_id, index, f"The ICM refused step {index + 1}: {exc.code}: {exc.message}", actor)
        with transaction.atomic():
            run = _lock(run_id)
            _record(run, index, DONE, message)
            return _advance(run, index, actor)
    try:
        with transaction.atomic():
            run = _lock(run_id)
            if run.state != WizardState.RUNNING or run.current_step != index:
                return run
            message = _run_local(run, step, actor)
            _record(run, index, DONE, message)
            return _advance(run, index, actor)
    except ValidationError as exc:
        return _fail(run_id, index, f"Step {index + 1} refused here: {' '.join(exc.messages)}", actor)
    except IntegrityError as exc:
        return _fail(run_id, index, f"Step {index + 1} refused by this server's database: {exc}", actor)


def _advance(run: WizardRun, index: int, actor: Actor) -> WizardRun:
    """Move past step ``index`` (the run is locked); complete it after the last step.

    A run interrupted while its ICM step was in flight keeps that state: the step's
    outcome is recorded, the run stays interrupted.
    """
    audit_record(
        actor=actor,
        action=AuditAction.WIZARD_STEP,
        target=run,
        after={"step": index + 1, "title": run.step_log[index]["title"], "result": run.step_log[index]["message"]},
    )
    if run.state == WizardState.RUNNING:
        run.current_step = index + 1
        if run.current_step >= len(run.step_log):
            run.state, run.finished_at = WizardState.COMPLETED, timezone.now()
            audit_record(actor=actor, action=AuditAction.WIZARD_COMPLETED, target=run, after={"params": run.params})
    run.save(update_fields=["current_step", "state", "finished_at", "step_log"])
    _publish(run)
    return run


@transaction.atomic
def _complete(run_id: int, actor: Actor) -> WizardRun:
    run = _lock(run_id)
    if run.state == WizardState.RUNNING:
        run.state, run.finished_at = WizardState.COMPLETED, timezone.now()
        run.save(update_fields=["state", "finished_at"])
        audit_record(actor=actor, action=AuditAction.WIZARD_COMPLETED, target=run)
        _publish(run)
    return run


@transaction.atomic
def _fail(run_id: int, index: int, message: str, actor: Actor) -> WizardRun:
    run = _lock(run_id)
    if run.state != WizardState.RUNNING:
        return run
    _record(run, index, FAILED, message)
    run.state, run.finished_at, run.error = WizardState.FAILED, timezone.now(), message[:300]
    run.save(update_fields=["state", "finished_at", "error", "step_log"])
    audit_record(actor=actor, action=AuditAction.WIZARD_FAILED, target=run, reason=message)
    if any(step["status"] == DONE for step in run.step_log):
        # Part of it was written: this server and the ICM may now disagree.
        alert_raise(
            server=run.server,
            kind=AlertKind.CONFIG_OUT_OF_SYNC,
            message=OUT_OF_SYNC_MESSAGE,
            severity=AlertSeverity.WARNING,
            actor=actor,
        )
    _publish(run)
    return run


def wizard_run_all(*, run_id: int, actor: Actor = WIZARD) -> WizardRun:
    """Run the remaining steps until the run completes, fails or is interrupted."""
    run = WizardRun.objects.get(pk=run_id)
    while run.state == WizardState.RUNNING:
        try:
            run = wizard_step(run_id=run_id, actor=actor)
        except Exception as exc:
            # Never leave a run "running" behind a crashed task: it may have written half.
            _fail(run_id, run.current_step, f"Internal error at step {run.current_step + 1}: {exc!r}", actor)
            raise
    return run


# --- The AW switchover hook ---------------------------------------------------------------


def after_admin_workstation_switched(link: Link, *, connected: object | None) -> None:
    """Called by the switchover, in its transaction, for every link change.

    For an Admin Workstation link: every wizard of the server still running under an older
    epoch is interrupted at once (its next ICM step would stop anyway), and once the
    switchover commits a verify-only check runs (Celery ``failover.verify_config``) and
    raises the out-of-sync alert if it finds differences.
    """
    if link.kind != PeerKind.ADMIN_WORKSTATION:
        return
    running = WizardRun.objects.filter(server_id=link.server_id, state=WizardState.RUNNING).exclude(aw_epoch=link.epoch)
    for run_id in running.values_list("pk", flat=True):
        wizard_interrupt(
            run_id=run_id,
            reason=f"The Admin Workstation link {'switched over' if connected else 'went down'} "
            f"(now epoch {link.epoch}) during the wizard.",
            actor=MONITOR,
        )
    if connected is not None:
        send_on_commit("failover.verify_config", link.server_id, kwargs={"epoch": link.epoch})
