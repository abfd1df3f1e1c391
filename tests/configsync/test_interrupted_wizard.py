"""Issue 6, point 5: the connected Admin Workstation is SIGKILLed in the middle of the
add-agent wizard. Real AW simulator processes fronting one ICM (issue 20), the real monitor
(probes and switchover), the wizard run step by step through its service so the kill falls
between two steps: Verify then finds exactly the wizard's half-made change.
"""

from __future__ import annotations

import io
import json
import threading

import pytest
from django.core.management import call_command

from configsync.services.sync import DeletionsNotConfirmed, StalePlan, sync_apply, sync_plan_update, sync_start
from configsync.services.verify import SyncBusy, verify_create, verify_run
from configsync.services.wizards import wizard_start, wizard_step
from failover.choices import AlertKind, AuditAction, SyncDirection, SyncRunState, WizardKind, WizardState
from failover.models import Alert, AuditEntry, Link, SyncRun, WizardRun
from failover.monitor.runner import monitor_in_thread
from sessions.models import Agent
from tests.configsync.conftest import aw_call, connected_peer, icm_agents
from tests.factories import StaffFactory
from tests.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

OUT_OF_SYNC = "Configuration may be out of sync: run Verify and Sync"
# What the add-agent wizard killed after "Create agent ann in the ICM" left undone.
HALF_MADE = ["membership:ann:sales", "membership:ann:support"]


def open_alert(server) -> Alert | None:
    return Alert.objects.filter(server=server, kind=AlertKind.CONFIG_OUT_OF_SYNC, cleared_at__isnull=True).first()


def test_killing_the_aw_mid_wizard_interrupts_it_and_verify_and_sync_repairs(server, aw_pair):
    link, processes = aw_pair
    admin = StaffFactory(username="admin")
    with monitor_in_thread():
        wait_until(lambda: connected_peer(link), timeout=10, message="an Admin Workstation connected")
        old = connected_peer(link)
        old_process = processes[old.name]
        new_name = ({"aw-1", "aw-2"} - {old.name}).pop()
        new_process = processes[new_name]
        wait_until(
            lambda: link.peers().filter(health="up").count() == 2, timeout=10, message="both AWs up (the standby too)"
        )
        # The first connection is checked too: both sides agree at the start.
        first_epoch = Link.objects.get(pk=link.pk).epoch
        wait_until(
            lambda: SyncRun.objects.filter(server=server, aw_epoch=first_epoch, state=SyncRunState.IN_SYNC).exists(),
            timeout=10,
            message="the check after the first connection: no differences",
        )
        assert open_alert(server) is None

        run = wizard_start(
            server_id=server.pk,
            kind=WizardKind.ADD_AGENT,
            params={"agent_id": "ann", "name": "Ann Lee", "skill_groups": ["sales", "support"]},
            actor=admin,
            reason="Ann joins sales and support",
        )
        assert [step["title"] for step in run.step_log] == [
            "Create agent ann on this server (2 session slots)",
            "Create agent ann in the ICM",
            "Add ann to skill group sales in the ICM",
            "Add ann to skill group support in the ICM",
        ]
        assert run.aw_epoch == first_epoch

        run = wizard_step(run_id=run.pk, actor=admin)  # this server's database
        run = wizard_step(run_id=run.pk, actor=admin)  # the ICM, through the connected AW
        assert [s["status"] for s in run.step_log] == ["done", "done", "pending", "pending"]
        assert icm_agents(old_process)["ann"]["skill_groups"] == []
        assert icm_agents(new_process)["ann"]["skill_groups"] == []  # one ICM behind both AWs

        old_process.kill()  # SIGKILL between step 2 and step 3

        run = wizard_step(run_id=run.pk, actor=admin)
        assert run.state == WizardState.INTERRUPTED
        assert run.current_step == 2
        assert [s["status"] for s in run.step_log] == ["done", "done", "interrupted", "pending"]
        assert run.finished_at is not None
        alert = open_alert(server)
        assert alert is not None
        assert alert.message == OUT_OF_SYNC
        assert AuditEntry.objects.filter(action=AuditAction.WIZARD_INTERRUPTED, object_id=str(run.pk)).exists()

        # The monitor switches to the other AW; the check after the switchover runs by itself
        # and finds what the wizard left undone: ann is in the ICM, in neither skill group.
        wait_until(
            lambda: connected_peer(link) and connected_peer(link).name == new_name, timeout=10, message="AW switch"
        )
        new_epoch = Link.objects.get(pk=link.pk).epoch
        assert new_epoch > first_epoch
        auto = wait_until(
            lambda: SyncRun.objects.filter(server=server, aw_epoch=new_epoch, state=SyncRunState.PLANNED).first(),
            timeout=10,
            message="the verify after the switchover found the difference",
        )
        assert [row["id"] for row in auto.plan] == HALF_MADE
        assert AuditEntry.objects.filter(
            action=AuditAction.SYNC_VERIFY, object_id=str(auto.pk), actor_name="system:verify-after-switchover"
        ).exists()

    # The wizard is still interrupted at the step where it stopped (the hook did not move it).
    assert WizardRun.objects.get(pk=run.pk).current_step == 2

    # Verify: exactly the steps the wizard did not get to, nothing else.
    plan_run = verify_run(server_id=server.pk, actor=admin)
    assert plan_run.state == SyncRunState.PLANNED
    assert [row["id"] for row in plan_run.plan] == HALF_MADE
    row = plan_run.plan[0]
    assert (row["kind"], row["local"], row["icm"]) == ("membership", "member", "not a member")
    assert row["summary"] == "Agent ann is in skill group sales only on this server"
    assert row["direction"] == SyncDirection.FROM_ICM  # the ICM is the source of truth by default
    assert row["fixes"]["from_icm"] == {
        "op": "delete_local",
        "text": "Remove ann from sales on this server",
        "removal": True,
    }
    assert row["fixes"]["to_icm"]["text"] == "Add ann to sales in the ICM"
    assert plan_run.icm_version == aw_call(new_process, "get_config")["config_version"]
    assert open_alert(server) is not None

    # Removing ann's memberships here needs the second confirmation.
    approve = [{"id": row_id, "approved": True} for row_id in HALF_MADE]
    sync_plan_update(run_id=plan_run.pk, rows=approve, actor=admin)
    with pytest.raises(DeletionsNotConfirmed):
        sync_start(run_id=plan_run.pk, actor=admin)
    assert SyncRun.objects.get(pk=plan_run.pk).state == SyncRunState.PLANNED

    # The administrator finishes the wizard's work in the ICM instead: no deletion, no confirmation.
    finish = [{"id": row_id, "direction": "to_icm"} for row_id in HALF_MADE]
    sync_plan_update(run_id=plan_run.pk, rows=finish, actor=admin)
    started = sync_start(run_id=plan_run.pk, actor=admin)
    assert started.state == SyncRunState.SYNCING
    assert (started.progress_done, started.progress_total) == (0, 2)
    done = sync_apply(run_id=plan_run.pk, actor=admin)
    assert done.state == SyncRunState.COMPLETED
    assert (done.progress_done, done.progress_total) == (2, 2)
    assert [row["result"]["status"] for row in done.plan] == ["done", "done"]
    assert done.report["done"] == 2
    assert done.report["failed"] == 0
    assert icm_agents(new_process)["ann"] == {
        "agent_id": "ann",
        "name": "Ann Lee",
        "enabled": True,
        "skill_groups": ["sales", "support"],
    }
    assert open_alert(server) is not None  # only a clean verify clears it

    # Idempotent: the same run again does nothing, and cannot be started twice.
    assert sync_apply(run_id=plan_run.pk, actor=admin).state == SyncRunState.COMPLETED
    version = aw_call(new_process, "get_config")["config_version"]

    clean = verify_run(server_id=server.pk, actor=admin)
    assert clean.state == SyncRunState.IN_SYNC
    assert clean.plan == []
    assert open_alert(server) is None
    assert Alert.objects.get(server=server, kind=AlertKind.CONFIG_OUT_OF_SYNC).clear_reason.startswith("Verify found")
    assert aw_call(new_process, "get_config")["config_version"] == version  # verify is read-only


def test_a_stale_plan_is_refused(server, connected_aw, groups):
    admin = StaffFactory(username="admin")
    aw_call(connected_aw, "create_agent", agent_id="bob", name="Bob", skill_groups=["sales"])
    run = verify_run(server_id=server.pk, actor=admin)
    assert [row["id"] for row in run.plan] == ["agent:bob"]
    sync_plan_update(run_id=run.pk, rows=[{"id": "agent:bob", "approved": True}], actor=admin)

    # Someone changes the ICM after the verify.
    aw_call(connected_aw, "create_skill_group", skill_group_id="billing", name="Billing")

    with pytest.raises(StalePlan, match="version"):
        sync_start(run_id=run.pk, actor=admin)
    run.refresh_from_db()
    assert run.state == SyncRunState.STALE
    assert not Agent.objects.filter(icm_id="bob").exists()
    assert AuditEntry.objects.filter(action=AuditAction.SYNC_REFUSED, object_id=str(run.pk)).exists()

    # A new verify makes a fresh plan; a local change after it makes that one stale too.
    fresh = verify_run(server_id=server.pk, actor=admin)
    assert sorted(row["id"] for row in fresh.plan) == ["agent:bob", "skill_group:billing"]
    sync_plan_update(run_id=fresh.pk, rows=[{"id": "agent:bob", "approved": True}], actor=admin)
    groups["support"].delete()
    with pytest.raises(StalePlan, match="this server"):
        sync_start(run_id=fresh.pk, actor=admin)


def test_the_safe_order_creates_groups_before_agents_and_every_row_gets_a_result(server, connected_aw, groups):
    admin = StaffFactory(username="admin")
    aw_call(connected_aw, "create_skill_group", skill_group_id="billing", name="Billing")
    aw_call(connected_aw, "create_agent", agent_id="cid", name="Cid Moss", enabled=False, skill_groups=["billing"])
    run = verify_run(server_id=server.pk, actor=admin)
    assert [row["id"] for row in run.plan] == ["skill_group:billing", "agent:cid"]
    # Approve in the "wrong" order: the agent first.
    sync_plan_update(
        run_id=run.pk,
        rows=[{"id": "agent:cid", "approved": True}, {"id": "skill_group:billing", "approved": True}],
        actor=admin,
    )
    sync_start(run_id=run.pk, actor=admin)
    done = sync_apply(run_id=run.pk, actor=admin)

    assert done.state == SyncRunState.COMPLETED
    cid = Agent.objects.get(server=server, icm_id="cid")
    assert (cid.enabled, [g.icm_id for g in cid.skill_groups.all()]) == (False, ["billing"])
    assert cid.user.get_full_name() == "Cid Moss"
    order = list(
        AuditEntry.objects.filter(action=AuditAction.SYNC_ROW, object_id=str(run.pk))
        .order_by("created_at", "id")
        .values_list("after__row", flat=True)
    )
    assert order == ["skill_group:billing", "agent:cid"]
    assert verify_run(server_id=server.pk, actor=admin).state == SyncRunState.IN_SYNC


def test_only_one_run_at_a_time(server, connected_aw):
    aw_call(connected_aw, "create_skill_group", skill_group_id="billing", name="Billing")
    planned = verify_run(server_id=server.pk, actor="system:test")
    sync_plan_update(run_id=planned.pk, rows=[{"id": "skill_group:billing", "approved": True}], actor="system:test")
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def launch() -> None:
        from django import db

        barrier.wait(timeout=10)
        try:
            outcomes.append(verify_create(server_id=server.pk, actor="system:test"))
        except SyncBusy as busy:
            outcomes.append(busy)
        finally:
            db.connections.close_all()

    threads = [threading.Thread(target=launch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    refused = [o for o in outcomes if isinstance(o, SyncBusy)]
    assert len(outcomes) == 2
    assert len(refused) == 1
    assert "already in progress" in str(refused[0])
    assert SyncRun.objects.filter(server=server, state=SyncRunState.VERIFYING).count() == 1

    # A sync cannot start while that verify holds the slot either.
    with pytest.raises(SyncBusy):
        sync_start(run_id=planned.pk, actor="system:test")
    assert SyncRun.objects.get(pk=planned.pk).state == SyncRunState.PLANNED


def test_a_sync_interrupted_by_the_aw_can_be_run_again(server, connected_aw, groups):
    admin = StaffFactory(username="admin")
    for agent_id in ("dee", "eve"):
        aw_call(connected_aw, "create_agent", agent_id=agent_id, name=agent_id.title(), skill_groups=["support"])
    run = verify_run(server_id=server.pk, actor=admin)
    sync_plan_update(run_id=run.pk, rows=[{"id": r["id"], "approved": True} for r in run.plan], actor=admin)
    sync_start(run_id=run.pk, actor=admin)

    stalled = connected_aw.ctl("fault", "refuse", via_control=True)  # the AW stops answering
    assert stalled.returncode == 0, stalled.stderr
    interrupted = sync_apply(run_id=run.pk, actor=admin)
    assert interrupted.state == SyncRunState.INTERRUPTED
    assert "stopped answering" in interrupted.error
    assert interrupted.report["not_done"] == 2

    assert connected_aw.ctl("fault", "clear", via_control=True).returncode == 0
    sync_start(run_id=run.pk, actor=admin)
    again = sync_apply(run_id=run.pk, actor=admin)
    assert again.state == SyncRunState.COMPLETED
    assert set(Agent.objects.filter(server=server).values_list("icm_id", flat=True)) == {"dee", "eve"}
    assert verify_run(server_id=server.pk, actor=admin).state == SyncRunState.IN_SYNC


def test_the_check_after_a_manual_aw_switchover_raises_the_alert(server, groups, start_aw, icm_store, monkeypatch):
    """No wizard at all: someone added an agent in the ICM with its own tools (``manage.py
    peerctl icm-add-agent``, through the standby AW: it is the same ICM). Switching over runs the
    verify-only check on commit (Celery eagerly here), which finds it and raises the alert."""
    from failover.choices import Health, PeerKind, PeerPriority
    from failover.models import Peer
    from failover.services.switchover import link_switchover
    from tests.factories import PeerFactory, peer_mark_connected

    processes = {name: start_aw(name, icm_store) for name in ("aw-1", "aw-2")}
    out = io.StringIO()
    outside = ["icm-add-agent", "gus", "--name", "Gus", "--skill-group", "sales"]
    call_command("peerctl", "--port", processes["aw-2"].port, *outside, stdout=out)
    assert json.loads(out.getvalue())["agent"]["skill_groups"] == ["sales"]
    peers = [
        PeerFactory(
            server=server, kind=PeerKind.ADMIN_WORKSTATION, priority=priority, name=name, port=processes[name].port
        )
        for priority, name in enumerate(("aw-1", "aw-2"), start=PeerPriority.PRIMARY)
    ]
    Peer.objects.filter(pk__in=[p.pk for p in peers]).update(health=Health.UP)
    peer_mark_connected(peers[0], epoch=1)
    link = Link.objects.get(server=server, kind=PeerKind.ADMIN_WORKSTATION)
    from common import live

    broadcast: list[tuple[str, dict]] = []
    monkeypatch.setattr(live, "send_now", lambda event_type, data, groups: broadcast.append((event_type, data)))

    result = link_switchover(link_id=link.pk, actor="system:test", reason="planned maintenance of aw-1")

    assert result.outcome == "switched"
    check = SyncRun.objects.get(server=server, aw_epoch=2)
    assert check.state == SyncRunState.PLANNED
    assert [row["id"] for row in check.plan] == ["agent:gus"]
    assert check.plan[0]["icm"] == "Gus (enabled; sales)"
    assert open_alert(server).message == OUT_OF_SYNC
    # Every administrator's desktop hears of it (the status group), after the commit.
    assert (
        "alert.changed",
        {
            "id": open_alert(server).pk,
            "server": "routing-a",
            "link": None,  # about the whole server, not one of its links
            "kind": "config_out_of_sync",
            "severity": "warning",
            "message": OUT_OF_SYNC,
            "open": True,
            "acknowledged": False,
            "acknowledged_by": "",
            "acknowledged_at": None,
        },
    ) in broadcast
    assert any(t == "sync.changed" and d["state"] == "planned" for t, d in broadcast)
