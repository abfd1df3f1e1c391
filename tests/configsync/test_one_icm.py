"""Issue 20, point 2: one ICM behind both Admin Workstations.

Real AW processes on one ICM store and the real monitor. Wizards that completed leave
nothing for the check after a switchover to find, whichever way the pair switches, so no
"Configuration may be out of sync" alert is ever raised. (A wizard cut short is found:
test_interrupted_wizard.py; a change made in the ICM outside collabadmin too.)
"""

from __future__ import annotations

from typing import Any

import pytest

from configsync.services.wizards import wizard_run_all, wizard_start
from failover.choices import AlertKind, Health, SyncRunState, WizardKind, WizardState
from failover.models import Alert, Link, Peer, Server, SyncRun, WizardRun
from failover.monitor.runner import monitor_in_thread
from failover.services.switchover import link_switchover
from tests.configsync.conftest import connected_peer, icm_agents
from tests.factories import StaffFactory
from tests.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def run_wizard(server: Server, admin: Any, kind: str, params: dict[str, Any]) -> WizardRun:
    run = wizard_start(server_id=server.pk, kind=kind, params=params, actor=admin, reason="issue 20")
    run = wizard_run_all(run_id=run.pk, actor=admin)
    assert run.state == WizardState.COMPLETED, run.step_log
    return run


def check_after(server: Server, link: Link) -> SyncRun:
    """The verify that ran by itself once the link reached its current epoch."""
    epoch = Link.objects.get(pk=link.pk).epoch
    return wait_until(
        lambda: SyncRun.objects.filter(
            server=server, aw_epoch=epoch, state__in=[SyncRunState.IN_SYNC, SyncRunState.PLANNED]
        ).first(),
        timeout=10,
        message=f"the check after the switch to epoch {epoch}",
    )


def test_a_switchover_after_completed_wizards_finds_no_difference_and_raises_no_alert(
    server, aw_pair, start_aw, icm_store
):
    link, processes = aw_pair
    admin = StaffFactory(username="admin")
    with monitor_in_thread():
        first = wait_until(lambda: connected_peer(link), timeout=10, message="an Admin Workstation connected")
        wait_until(lambda: link.peers().filter(health=Health.UP).count() == 2, timeout=10, message="both AWs up")
        assert check_after(server, link).state == SyncRunState.IN_SYNC

        # Every wizard writes through the first AW.
        run_wizard(
            server, admin, WizardKind.ADD_AGENT, {"agent_id": "ann", "name": "Ann Lee", "skill_groups": ["sales"]}
        )
        run_wizard(server, admin, WizardKind.ADD_SKILL_GROUP, {"skill_group_id": "billing", "name": "Billing"})

        processes[first.name].kill()  # no wizard running: a clean failover
        second = wait_until(
            lambda: (peer := connected_peer(link)) is not None and peer.name != first.name and peer,
            timeout=10,
            message="the switch to the other AW",
        )
        check = check_after(server, link)
        assert (check.state, check.plan) == (SyncRunState.IN_SYNC, [])
        assert icm_agents(processes[second.name])["ann"]["skill_groups"] == ["sales"]

        # Now through the second AW, then back to the first one, restarted by hand.
        run_wizard(
            server, admin, WizardKind.CHANGE_AGENT_SKILLS, {"agent_id": "ann", "skill_groups": ["billing", "support"]}
        )
        restarted = start_aw(first.name, icm_store, "--port", str(first.port))
        wait_until(
            lambda: Peer.objects.get(pk=first.pk).health == Health.UP, timeout=10, message="the first AW up again"
        )
        assert link_switchover(link_id=link.pk, actor=admin, reason="back to the primary").outcome == "switched"
        check = check_after(server, link)
        assert (check.state, check.plan) == (SyncRunState.IN_SYNC, [])
        assert icm_agents(restarted)["ann"]["skill_groups"] == ["billing", "support"]

    assert not Alert.objects.filter(server=server, kind=AlertKind.CONFIG_OUT_OF_SYNC).exists()
    assert SyncRun.objects.filter(server=server).exclude(state=SyncRunState.IN_SYNC).count() == 0
