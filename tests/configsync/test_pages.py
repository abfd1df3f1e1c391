"""The Administration desktop's Wizards and Verify and Sync pages: staff only, what they show,
their forms and refusals. No processes here: a wizard or a verify launched from a page runs
in a Celery task once the request commits, which these (non-transactional) tests never do."""

from __future__ import annotations

import pytest
from django.utils import timezone

from configsync.services import icm
from configsync.services.local_config import local_config
from configsync.services.verify import compare
from failover.choices import AlertKind, LinkState, PeerKind, PeerPriority, SyncRunState, WizardKind, WizardState
from failover.models import Link, SyncRun, WizardRun
from tests.factories import AgentFactory, AlertFactory, PeerFactory, SkillGroupFactory, peer_mark_connected

pytestmark = pytest.mark.django_db

PAGES = ["/console/wizards/", "/console/sync/"]


@pytest.fixture
def aw(server):
    peer = PeerFactory(server=server, kind=PeerKind.ADMIN_WORKSTATION, priority=PeerPriority.PRIMARY, name="aw-1")
    PeerFactory(server=server, kind=PeerKind.ADMIN_WORKSTATION, priority=PeerPriority.SECONDARY, name="aw-2")
    return peer_mark_connected(peer, epoch=3)


@pytest.fixture
def sales(server):
    return SkillGroupFactory(server=server, icm_id="sales", name="Sales")


@pytest.mark.parametrize("url", [*PAGES, "/console/wizards/1/"])
def test_anonymous_visitors_go_to_the_log_in_page_and_agents_are_refused(anonymous_client, agent_client, url):
    response = anonymous_client.get(url)
    assert response.status_code == 302
    assert response.url.startswith("/login/")
    assert agent_client.get(url).status_code == 403  # signed in, no role: no log-in loop


@pytest.mark.parametrize("url", ["/console/wizards/start/", "/console/sync/verify/", "/console/sync/apply/"])
def test_agents_cannot_post(agent_client, server, url):
    response = agent_client.post(url, {"server": server.pk, "kind": "add_skill_group"})

    assert response.status_code == 403
    assert not WizardRun.objects.exists()
    assert not SyncRun.objects.exists()


def test_the_nav_links_to_both_pages(admin_client, server):
    html = admin_client.get("/console/wizards/").content.decode()

    assert '<a href="/console/wizards/" aria-current="page">Wizards</a>' in html
    assert '<a href="/console/sync/">Verify and Sync</a>' in html


def test_starting_a_wizard_from_the_page_shows_its_run(admin_client, server, aw, sales):
    page = admin_client.get("/console/wizards/", {"server": server.pk}).content.decode()
    assert "Writes go to the ICM through <strong>aw-1</strong>" in page
    assert 'value="sales"' in page

    response = admin_client.post(
        "/console/wizards/start/",
        {
            "server": server.pk,
            "kind": "add_agent",
            "agent_id": "ann",
            "name": "Ann Lee",
            "skill_groups": ["sales"],
            "enabled": "1",
            "reason": "Ann joins sales",
        },
    )

    run = WizardRun.objects.get()
    assert response.status_code == 302
    assert response.url == f"/console/wizards/{run.pk}/"
    assert (run.kind, run.state, run.aw_epoch) == (WizardKind.ADD_AGENT, WizardState.RUNNING, 3)
    assert run.params["skill_groups"] == ["sales"]
    html = admin_client.get(response.url).content.decode()
    assert 'role="progressbar"' in html
    assert 'aria-valuenow="0"' in html
    assert "Create agent ann in the ICM" in html
    assert "Add an agent started on routing-a." in html
    fragment = admin_client.get(response.url, {"fragment": "1"})
    assert fragment["Cache-Control"] == "no-store"
    assert 'data-region="run"' in fragment.content.decode()
    assert "<html" not in fragment.content.decode()


def test_a_wizard_with_bad_input_is_refused_with_a_message(admin_client, server, aw):
    response = admin_client.post(
        "/console/wizards/start/",
        {"server": server.pk, "kind": "add_skill_group", "skill_group_id": "", "name": "X", "reason": "new team"},
        follow=True,
    )

    assert "Add a skill group: not started." in response.content.decode()
    assert not WizardRun.objects.exists()


def test_a_wizard_without_a_connected_aw_is_refused(admin_client, server, sales):
    response = admin_client.post(
        "/console/wizards/start/",
        {"server": server.pk, "kind": "add_skill_group", "skill_group_id": "vip", "name": "VIP", "reason": "VIP team"},
        follow=True,
    )

    html = response.content.decode()
    assert "No Admin Workstation is connected for this server" in html
    assert not WizardRun.objects.exists()


def planned_run(server, aw) -> SyncRun:
    """A verify's plan made from this server and an ICM that lacks agent ann and has bob."""
    remote = icm.IcmConfig(
        version=7,
        agents={"bob": {"name": "Bob", "enabled": True, "skill_groups": ["sales"]}},
        skill_groups={"sales": "Sales"},
    )
    local = local_config(server.pk)
    return SyncRun.objects.create(
        server=server,
        state=SyncRunState.PLANNED,
        started_at=timezone.now(),
        plan=compare(local, remote),
        icm_version=7,
        local_fingerprint=local.fingerprint(),
        aw_epoch=aw.connected_epoch,
    )


def test_the_plan_table_approvals_and_the_second_confirmation(admin_client, server, aw, sales):
    AgentFactory(server=server, icm_id="ann", user__username="ann")
    run = planned_run(server, aw)
    AlertFactory(
        server=server,
        kind=AlertKind.CONFIG_OUT_OF_SYNC,
        message="Configuration may be out of sync: run Verify and Sync",
    )

    html = admin_client.get("/console/sync/", {"server": server.pk}).content.decode()
    assert "Configuration may be out of sync: run Verify and Sync" in html
    assert "Agent ann exists only on this server" in html
    assert "Agent bob exists only in the ICM" in html
    assert 'aria-label="Approve: Agent ann exists only on this server"' in html
    assert "Delete agent ann from this server" in html
    assert 'role="progressbar"' not in html  # nothing to show before the sync starts

    saved = admin_client.post(
        "/console/sync/apply/", {"run": run.pk, "do": "save", "approve": ["agent:ann", "agent:bob"]}, follow=True
    )
    assert "2 rows approved" in saved.content.decode()
    run.refresh_from_db()
    assert [r["approved"] for r in run.plan] == [True, True]

    no_reason = admin_client.post(
        "/console/sync/apply/", {"run": run.pk, "do": "sync", "approve": ["agent:ann", "agent:bob"]}, follow=True
    )
    assert "Sync not started: say why in the reason field" in no_reason.content.decode()
    refused = admin_client.post(
        "/console/sync/apply/",
        {"run": run.pk, "do": "sync", "approve": ["agent:ann", "agent:bob"], "reason": "after the AW failover"},
        follow=True,
    )
    assert "confirm the deletions" in refused.content.decode()
    run.refresh_from_db()
    assert run.state == SyncRunState.PLANNED

    # The direction chosen per row changes the fix: ann is written to the ICM instead.
    admin_client.post(
        "/console/sync/apply/",
        {"run": run.pk, "do": "save", "approve": ["agent:ann"], "direction:agent:ann": "to_icm"},
    )
    run.refresh_from_db()
    assert [(r["id"], r["approved"], r["direction"]) for r in run.plan] == [
        ("agent:ann", True, "to_icm"),
        ("agent:bob", False, "from_icm"),
    ]
    html = admin_client.get("/console/sync/", {"server": server.pk, "run": run.pk}).content.decode()
    assert "Create agent ann in the ICM" in html

    # While the task applies the rows, the fragment carries the progress.
    SyncRun.objects.filter(pk=run.pk).update(state=SyncRunState.SYNCING, progress_done=1, progress_total=2)
    fragment = admin_client.get(
        "/console/sync/", {"server": server.pk, "run": run.pk, "fragment": "1"}
    ).content.decode()
    assert 'role="progressbar" aria-label="Sync progress"' in fragment
    assert 'aria-valuenow="50"' in fragment


def test_verify_is_refused_while_a_run_is_busy(admin_client, server, aw):
    busy = SyncRun.objects.create(server=server, state=SyncRunState.SYNCING, started_at=timezone.now())

    response = admin_client.post("/console/sync/verify/", {"server": server.pk}, follow=True)

    assert "Verify not started: A Verify and Sync run is already in progress" in response.content.decode()
    assert SyncRun.objects.get() == busy


def test_the_overview_alert_links_to_verify_and_sync(admin_client, server):
    AlertFactory(
        server=server,
        kind=AlertKind.CONFIG_OUT_OF_SYNC,
        message="Configuration may be out of sync: run Verify and Sync",
    )
    AlertFactory(server=server, kind=AlertKind.LINK_DOWN, message="Media Blender link down")

    html = admin_client.get("/").content.decode()

    assert html.count("Run Verify and Sync</a>") == 1
    assert f'href="/console/sync/?server={server.pk}"' in html


def test_verify_and_sync_wait_while_the_admin_workstation_link_switches_over(admin_client, server, aw, sales):
    AgentFactory(server=server, icm_id="ann", user__username="ann")
    run = planned_run(server, aw)
    Link.objects.filter(server=server, kind=PeerKind.ADMIN_WORKSTATION).update(state=LinkState.SWITCHING)

    html = admin_client.get("/console/sync/", {"server": server.pk}).content.decode()
    assert html.count('disabled title="The Admin Workstation link is switching over"') == 2  # Verify and Sync

    refused = admin_client.post(
        "/console/sync/apply/",
        {"run": run.pk, "do": "sync", "approve": ["agent:bob"], "reason": "drift"},
        follow=True,
    )
    assert "The Admin Workstation link is switching over" in refused.content.decode()
    run.refresh_from_db()
    assert run.state == SyncRunState.PLANNED

    # The API applies the same rule (the service does): 409, the run untouched.
    admin_client.post(
        f"/api/v1/sync-runs/{run.pk}/approve/",
        {"rows": [{"id": "agent:bob", "approved": True}]},
        content_type="application/json",
    )
    api = admin_client.post(f"/api/v1/sync-runs/{run.pk}/sync/", {}, content_type="application/json")
    assert api.status_code == 409
    assert "The Admin Workstation link is switching over" in api.json()["detail"]
    run.refresh_from_db()
    assert run.state == SyncRunState.PLANNED
