"""Verify: compare this server's configuration with the ICM's, read-only (docs/product.md, 'Verify and Sync').

Compares agents, skill groups, memberships and agents' enabled state, and saves the
differences on a ``SyncRun`` as its plan: one row per difference, saying what differs,
what each side has, and the fix in each direction; the ICM is the source of truth by
default (``from_icm``), the administrator may choose ``to_icm`` per row and approves rows
before Sync applies them. The run records the ICM's ``config_version``, the local
fingerprint and the AW link's epoch, so Sync can refuse a plan that has gone stale.

A verify with no differences clears the out-of-sync alert; one with differences raises it
(when it ran by itself after a switchover) or keeps it.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from common import live
from common.actors import VERIFY, VERIFY_AFTER_SWITCHOVER, Actor
from common.outbox import send_now
from configsync.services import icm
from configsync.services.local_config import LocalConfig, local_config
from configsync.services.wizards import OUT_OF_SYNC_MESSAGE
from failover.choices import AlertKind, AlertSeverity, AuditAction, SyncDirection, SyncRunState
from failover.models import Server, SyncRun
from failover.peering import client
from failover.services.alerts import alert_clear, alert_raise
from failover.services.audit import audit_record

log = logging.getLogger(__name__)


# Row kinds, in the order Sync applies their fixes' creations (deletions go in reverse).
SKILL_GROUP, AGENT, MEMBERSHIP, ENABLED = "skill_group", "agent", "membership", "agent_enabled"


class SyncBusy(Exception):
    """Another Verify or Sync run of this server is in progress (one at a time)."""

    def __init__(self, server: Server, busy: SyncRun | None) -> None:
        self.busy = busy
        super().__init__(
            f"A Verify and Sync run is already in progress for {server.name}"
            + (f" (run {busy.pk}, {busy.get_state_display().lower()})." if busy else ".")
        )


def run_payload(run: SyncRun) -> dict[str, Any]:
    return {
        "id": run.pk,
        "server": run.server_id,
        "state": run.state,
        "progress_done": run.progress_done,
        "progress_total": run.progress_total,
        "differences": len(run.plan),
    }


def publish_run(run: SyncRun) -> None:
    live.publish("sync.changed", run_payload(run))


def _row(
    kind: str,
    key: str,
    summary: str,
    *,
    local: str,
    icm_side: str,
    from_icm: tuple[str, str, bool],
    to_icm: tuple[str, str, bool],
    data: dict[str, Any],
) -> dict[str, Any]:
    """One plan row. ``from_icm``/``to_icm``: (operation, text, is a removal) of each fix."""
    return {
        "id": f"{kind}:{key}",
        "kind": kind,
        "summary": summary,
        "local": local,
        "icm": icm_side,
        "data": data,
        "fixes": {
            SyncDirection.FROM_ICM.value: {"op": from_icm[0], "text": from_icm[1], "removal": from_icm[2]},
            SyncDirection.TO_ICM.value: {"op": to_icm[0], "text": to_icm[1], "removal": to_icm[2]},
        },
        "direction": SyncDirection.FROM_ICM.value,
        "approved": False,
        "result": None,
    }


def compare(local: LocalConfig, remote: icm.IcmConfig) -> list[dict[str, Any]]:
    """Every difference as a plan row, sorted by kind then id (deterministic)."""
    rows = _compare_skill_groups(local, remote)
    for agent_id in sorted(set(local.agents) | set(remote.agents)):
        rows += _compare_agent(agent_id, local.agents.get(agent_id), remote.agents.get(agent_id))
    return rows


def _one_sided(
    kind: str, key: str, summary: str, *, here: bool, shown: str, remove: str, add: str, data: dict
) -> dict[str, Any]:
    """A row for something only one side has: this server (``here``) or the ICM. ``shown``
    is how the side that has it describes it; ``remove`` deletes it where it is, ``add``
    creates it where it is missing."""
    absent = "not a member" if kind == MEMBERSHIP else "missing"
    if here:
        local, icm_side = shown, absent
        from_icm, to_icm = ("delete_local", remove, True), ("create_icm", add, False)
    else:
        local, icm_side = absent, shown
        from_icm, to_icm = ("create_local", add, False), ("delete_icm", remove, True)
    return _row(kind, key, summary, local=local, icm_side=icm_side, from_icm=from_icm, to_icm=to_icm, data=data)


def _compare_skill_groups(local: LocalConfig, remote: icm.IcmConfig) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for group in sorted(set(local.skill_groups) | set(remote.skill_groups)):
        here, there = local.skill_groups.get(group), remote.skill_groups.get(group)
        if here is not None and there is None:
            rows.append(
                _one_sided(
                    SKILL_GROUP,
                    group,
                    f"Skill group {group} exists only on this server",
                    here=True,
                    shown=f"{here}",
                    remove=f"Delete skill group {group} from this server",
                    add=f"Create skill group {group} in the ICM",
                    data={"skill_group_id": group, "name": here},
                )
            )
        elif there is not None and here is None:
            rows.append(
                _one_sided(
                    SKILL_GROUP,
                    group,
                    f"Skill group {group} exists only in the ICM",
                    here=False,
                    shown=f"{there}",
                    add=f"Create skill group {group} on this server",
                    remove=f"Delete skill group {group} from the ICM",
                    data={"skill_group_id": group, "name": there},
                )
            )
    return rows


# How a row names the side that has a thing and the side that lacks it, by "this server has
# it": (where it is, who holds it, where it is missing).
_SIDES = {True: ("on this server", "this server", "in the ICM"), False: ("in the ICM", "the ICM", "on this server")}


def _compare_agent(agent_id: str, here: dict | None, there: dict | None) -> list[dict[str, Any]]:
    if bool(here) != bool(there):
        on_server = bool(here)
        holder = here or there
        where, holder_name, other = _SIDES[on_server]
        row = _one_sided(
            AGENT,
            agent_id,
            f"Agent {agent_id} exists only {where}",
            here=on_server,
            shown=_describe_agent(holder),
            remove=f"Delete agent {agent_id} from {holder_name}",
            add=f"Create agent {agent_id} {other}",
            data={"agent_id": agent_id, **holder},
        )
        return [row]
    if not (here and there):
        return []
    rows = [_enabled_row(agent_id, here["enabled"], there["enabled"])] if here["enabled"] != there["enabled"] else []
    return rows + _compare_memberships(agent_id, set(here["skill_groups"]), set(there["skill_groups"]))


def _enabled_row(agent_id: str, here: bool, there: bool) -> dict[str, Any]:
    return _row(
        ENABLED,
        agent_id,
        f"Agent {agent_id} is {_state(here)} here but {_state(there)} in the ICM",
        local=_state(here),
        icm_side=_state(there),
        from_icm=("set_local", f"{_verb(there)} {agent_id} on this server", False),
        to_icm=("set_icm", f"{_verb(here)} {agent_id} in the ICM", False),
        data={"agent_id": agent_id, "local": here, "icm": there},
    )


def _compare_memberships(agent_id: str, mine: set[str], theirs: set[str]) -> list[dict[str, Any]]:
    rows = [
        _one_sided(
            MEMBERSHIP,
            f"{agent_id}:{group}",
            f"Agent {agent_id} is in skill group {group} only on this server",
            here=True,
            shown="member",
            remove=f"Remove {agent_id} from {group} on this server",
            add=f"Add {agent_id} to {group} in the ICM",
            data={"agent_id": agent_id, "skill_group_id": group},
        )
        for group in sorted(mine - theirs)
    ]
    rows += [
        _one_sided(
            MEMBERSHIP,
            f"{agent_id}:{group}",
            f"Agent {agent_id} is in skill group {group} only in the ICM",
            here=False,
            shown="member",
            add=f"Add {agent_id} to {group} on this server",
            remove=f"Remove {agent_id} from {group} in the ICM",
            data={"agent_id": agent_id, "skill_group_id": group},
        )
        for group in sorted(theirs - mine)
    ]
    return rows


def _state(enabled: bool) -> str:
    return "enabled" if enabled else "disabled"


def _verb(enabled: bool) -> str:
    return "Enable" if enabled else "Disable"


def _describe_agent(agent: dict[str, Any]) -> str:
    groups = ", ".join(agent["skill_groups"]) or "no skill groups"
    return f"{agent['name']} ({_state(agent['enabled'])}; {groups})"


# --- Runs ----------------------------------------------------------------------------------


def busy_run(server_id: int) -> SyncRun | None:
    return SyncRun.objects.filter(server_id=server_id, state__in=[SyncRunState.VERIFYING, SyncRunState.SYNCING]).first()


def verify_create(*, server_id: int, actor: Actor) -> SyncRun:
    """A new run in state *verifying* (it holds the server's one-run slot); ``SyncBusy`` if taken."""
    server = Server.objects.get(pk=server_id)
    try:
        with transaction.atomic():
            run = SyncRun.objects.create(
                server=server,
                state=SyncRunState.VERIFYING,
                started_by=actor if not isinstance(actor, str | None) else None,
                started_at=timezone.now(),
                aw_epoch=icm.link_epoch(server_id),
            )
            publish_run(run)
    except IntegrityError:
        raise SyncBusy(server, busy_run(server_id)) from None
    return run


def verify_execute(*, run_id: int, actor: Actor = VERIFY, auto: bool = False) -> SyncRun:
    """Compare and save the plan on a *verifying* run; it ends *in sync*, *planned* or, if
    the AW did not answer, *interrupted*. Read-only for both sides."""
    run = SyncRun.objects.select_related("server").get(pk=run_id)
    if run.state != SyncRunState.VERIFYING:
        return run
    try:
        remote, peer = icm.read_icm_config(run.server_id)
    except client.PeerException as exc:
        return _give_up(run_id, SyncRunState.INTERRUPTED, f"The ICM could not be read: {exc}", actor)
    try:
        return _save_plan(run_id, remote, peer, actor, auto)
    except Exception as exc:
        _give_up(run_id, SyncRunState.FAILED, f"Internal error: {exc!r}", actor)
        raise


def _give_up(run_id: int, state: SyncRunState, error: str, actor: Actor) -> SyncRun:
    """End a verifying run without a plan (its one-run slot is released)."""
    with transaction.atomic():
        run = SyncRun.objects.select_for_update(of=("self",)).select_related("server").get(pk=run_id)
        if run.state != SyncRunState.VERIFYING:
            return run
        run.state, run.finished_at, run.error = state, timezone.now(), error[:300]
        run.save(update_fields=["state", "finished_at", "error"])
        audit_record(actor=actor, action=AuditAction.SYNC_VERIFY, target=run, reason=run.error)
        publish_run(run)
    return run


def _save_plan(run_id: int, remote: icm.IcmConfig, peer: icm.AdminWorkstationPeer, actor: Actor, auto: bool) -> SyncRun:
    run = SyncRun.objects.select_related("server").get(pk=run_id)
    local = local_config(run.server_id)
    rows = compare(local, remote)
    with transaction.atomic():
        run = SyncRun.objects.select_for_update(of=("self",)).select_related("server").get(pk=run_id)
        run.plan = rows
        run.icm_version = remote.version
        run.local_fingerprint = local.fingerprint()
        run.aw_epoch = peer.epoch
        run.state = SyncRunState.PLANNED if rows else SyncRunState.IN_SYNC
        run.finished_at = timezone.now() if not rows else None
        run.progress_done, run.progress_total = 0, 0
        run.report = {"verified_at": timezone.now().isoformat(), "aw": peer.name, "differences": len(rows)}
        run.save()
        audit_record(
            actor=actor,
            action=AuditAction.SYNC_VERIFY,
            target=run,
            reason="automatic check after an Admin Workstation switchover" if auto else "",
            after={"differences": len(rows), "icm_version": remote.version, "aw": peer.name},
        )
        if rows:
            alert_raise(
                server=run.server,
                kind=AlertKind.CONFIG_OUT_OF_SYNC,
                message=OUT_OF_SYNC_MESSAGE,
                severity=AlertSeverity.WARNING,
                actor=actor,
            )
        else:
            alert_clear(
                server=run.server,
                kind=AlertKind.CONFIG_OUT_OF_SYNC,
                actor=actor,
                reason="Verify found no differences between this server and the ICM.",
            )
        publish_run(run)
    return run


def verify_run(*, server_id: int, actor: Actor = VERIFY, auto: bool = False) -> SyncRun:
    """Create and execute a verify in one go (tests, the automatic check)."""
    run = verify_create(server_id=server_id, actor=actor)
    return verify_execute(run_id=run.pk, actor=actor, auto=auto)


def verify_launch(*, server_id: int, actor: Actor) -> SyncRun:
    """Create a verify run now (``SyncBusy`` if one is in progress); the Celery task
    ``failover.verify_existing`` executes it."""
    run = verify_create(server_id=server_id, actor=actor)
    if not send_now("failover.verify_existing", run.pk, None if isinstance(actor, str | None) else actor.pk):
        return _give_up(
            run.pk, SyncRunState.INTERRUPTED, "The verify could not be queued: the broker is unreachable.", actor
        )
    return run


def verify_after_switchover(*, server_id: int, epoch: int | None = None) -> SyncRun | None:
    """The verify-only check after an AW switchover; skipped when the link moved past
    ``epoch`` (a later switchover has its own) or another run is busy (it reads the ICM too)."""
    if epoch is not None and icm.link_epoch(server_id) != epoch:
        return None
    try:
        return verify_run(server_id=server_id, actor=VERIFY_AFTER_SWITCHOVER, auto=True)
    except SyncBusy:
        log.info("verify after the AW switchover of server %s skipped: a run is in progress", server_id)
        return None
