"""/api/v1/wizards/ and /api/v1/sync-runs/ against a real Admin Workstation process: who may
use them, what they answer, and their 4xx. Celery is eager (a launched wizard, verify or
sync runs when its request commits), hence transactional tests."""

from __future__ import annotations

import pytest

from failover.choices import PeerConnection, PeerKind, SyncRunState, WizardState
from failover.models import Link, Peer, SyncRun
from sessions.models import Agent, SkillGroup
from tests.configsync.conftest import aw_call, icm_agents
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.mark.parametrize("url", ["/api/v1/wizards/", "/api/v1/sync-runs/"])
def test_only_administrators_may_use_them(anonymous_api, agent_api, url):
    assert anonymous_api.get(url).status_code in (401, 403)
    refused = agent_api.post(url, {}, format="json")
    assert refused.status_code == 403
    assert refused.json()["detail"].startswith("Your role does not allow this (it needs: ")


def test_a_wizard_runs_and_its_step_log_is_readable(admin_api, server, connected_aw):
    response = admin_api.post(
        "/api/v1/wizards/",
        {
            "server": server.pk,
            "kind": "add_skill_group",
            "params": {"skill_group_id": "billing", "name": "Billing"},
            "reason": "New billing team",
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    run = admin_api.get(f"/api/v1/wizards/{response.json()['id']}/").json()
    assert run["state"] == WizardState.COMPLETED
    assert (run["current_step"], run["steps_total"], run["percent"]) == (2, 2, 100)
    assert [(s["title"], s["status"]) for s in run["step_log"]] == [
        ("Create skill group billing on this server", "done"),
        ("Create skill group billing in the ICM", "done"),
    ]
    assert run["started_by"] == "admin"
    assert SkillGroup.objects.filter(server=server, icm_id="billing", name="Billing").exists()
    assert {"skill_group_id": "billing", "name": "Billing"} in aw_call(connected_aw, "get_config")["skill_groups"]
    listed = admin_api.get("/api/v1/wizards/", {"state": "completed", "server": server.pk}).json()
    assert [r["id"] for r in listed["results"]] == [run["id"]]


def test_the_change_skills_and_remove_wizards(admin_api, server, connected_aw):
    created = admin_api.post(
        "/api/v1/wizards/",
        {
            "server": server.pk,
            "kind": "add_agent",
            "params": {"agent_id": "ann", "name": "Ann Lee", "skill_groups": ["sales"]},
            "reason": "Ann joins sales",
        },
        format="json",
    )
    assert created.json()["state"] == "completed", created.json()
    changed = admin_api.post(
        "/api/v1/wizards/",
        {
            "server": server.pk,
            "kind": "change_agent_skills",
            "params": {"agent_id": "ann", "skill_groups": ["support"]},
            "reason": "Ann moves to support",
        },
        format="json",
    )
    assert [s["title"] for s in changed.json()["step_log"]] == [
        "Set the skill groups of ann on this server",
        "Add ann to support in the ICM",
        "Remove ann from sales in the ICM",
    ]
    assert icm_agents(connected_aw)["ann"]["skill_groups"] == ["support"]
    assert [g.icm_id for g in Agent.objects.get(icm_id="ann").skill_groups.all()] == ["support"]

    removed = admin_api.post(
        "/api/v1/wizards/",
        {"server": server.pk, "kind": "remove_agent", "params": {"agent_id": "ann"}, "reason": "Ann left"},
        format="json",
    )
    assert removed.json()["state"] == "completed"
    assert "ann" not in icm_agents(connected_aw)
    assert not Agent.objects.filter(icm_id="ann").exists()


def test_wizard_input_errors_are_400_per_field(admin_api, server, connected_aw):
    def start(kind, **params):
        body = {"server": server.pk, "kind": kind, "params": params, "reason": "testing the input checks"}
        return admin_api.post("/api/v1/wizards/", body, format="json")

    bad_id = start("add_agent", agent_id="no spaces", name="X")
    assert bad_id.status_code == 400
    assert "agent_id" in bad_id.json()
    unknown_group = start("add_agent", agent_id="bob", name="Bob", skill_groups=["nope"])
    assert unknown_group.status_code == 400
    assert unknown_group.json()["skill_groups"] == ["Unknown skill groups on this server: nope."]
    assert start("remove_agent", agent_id="ghost").json() == {"agent_id": ["No agent ghost on this server."]}
    assert start("teleport").status_code == 400
    missing = admin_api.post("/api/v1/wizards/", {"kind": "add_agent"}, format="json")
    assert set(missing.json()) == {"server", "params", "reason"}


def test_a_wizard_without_a_connected_aw_is_409(admin_api, server, connected_aw):
    Peer.objects.filter(server=server, kind=PeerKind.ADMIN_WORKSTATION).update(
        connection=PeerConnection.STANDBY, connected_epoch=None
    )

    response = admin_api.post(
        "/api/v1/wizards/",
        {
            "server": server.pk,
            "kind": "add_skill_group",
            "params": {"skill_group_id": "billing", "name": "Billing"},
            "reason": "New billing team",
        },
        format="json",
    )

    assert response.status_code == 409
    assert "No Admin Workstation is connected" in response.json()["detail"]


def test_verify_approve_and_sync_through_the_api(admin_api, server, connected_aw):
    aw_call(connected_aw, "create_agent", agent_id="bob", name="Bob Ray", skill_groups=["sales"])
    Agent.objects.create(
        user=UserFactory(username="zed"),
        server=server,
        icm_id="zed",
    )

    launched = admin_api.post("/api/v1/sync-runs/", {"server": server.pk}, format="json")
    assert launched.status_code == 202
    run_id = launched.json()["id"]
    run = admin_api.get(f"/api/v1/sync-runs/{run_id}/").json()
    assert run["state"] == SyncRunState.PLANNED
    assert [(r["id"], r["direction"], r["approved"]) for r in run["plan"]] == [
        ("agent:bob", "from_icm", False),
        ("agent:zed", "from_icm", False),
    ]

    nothing = admin_api.post(f"/api/v1/sync-runs/{run_id}/sync/", {}, format="json")
    assert nothing.status_code == 400
    assert "Approve at least one row" in str(nothing.json())

    unknown = admin_api.post(
        f"/api/v1/sync-runs/{run_id}/approve/", {"rows": [{"id": "agent:nobody", "approved": True}]}, format="json"
    )
    assert unknown.status_code == 400
    bad_direction = admin_api.post(
        f"/api/v1/sync-runs/{run_id}/approve/", {"rows": [{"id": "agent:bob", "direction": "sideways"}]}, format="json"
    )
    assert bad_direction.status_code == 400

    approved = admin_api.post(
        f"/api/v1/sync-runs/{run_id}/approve/",
        {"rows": [{"id": "agent:bob", "approved": True}, {"id": "agent:zed", "approved": True}]},
        format="json",
    )
    assert approved.status_code == 200
    # zed exists only here: the ICM wins by default, so it would be deleted here.
    unconfirmed = admin_api.post(f"/api/v1/sync-runs/{run_id}/sync/", {}, format="json")
    assert unconfirmed.status_code == 400
    assert "Delete agent zed from this server" in unconfirmed.json()["confirm_deletions"][0]

    synced = admin_api.post(f"/api/v1/sync-runs/{run_id}/sync/", {"confirm_deletions": True}, format="json")
    assert synced.status_code == 202, synced.json()
    done = admin_api.get(f"/api/v1/sync-runs/{run_id}/").json()
    assert done["state"] == SyncRunState.COMPLETED
    assert (done["progress_done"], done["progress_total"]) == (2, 2)
    assert done["report"]["done"] == 2
    assert [r["status"] for r in done["report"]["rows"]] == ["done", "done"]
    assert set(Agent.objects.filter(server=server).values_list("icm_id", flat=True)) == {"bob"}

    again = admin_api.post(f"/api/v1/sync-runs/{run_id}/sync/", {"confirm_deletions": True}, format="json")
    assert again.status_code == 409
    late = admin_api.post(
        f"/api/v1/sync-runs/{run_id}/approve/", {"rows": [{"id": "agent:bob", "approved": False}]}, format="json"
    )
    assert late.status_code == 409

    clean = admin_api.post("/api/v1/sync-runs/", {"server": server.pk}, format="json").json()
    assert admin_api.get(f"/api/v1/sync-runs/{clean['id']}/").json()["state"] == SyncRunState.IN_SYNC


def test_a_stale_plan_and_a_busy_server_are_409(admin_api, server, connected_aw):
    aw_call(connected_aw, "create_skill_group", skill_group_id="billing", name="Billing")
    run_id = admin_api.post("/api/v1/sync-runs/", {"server": server.pk}, format="json").json()["id"]
    admin_api.post(
        f"/api/v1/sync-runs/{run_id}/approve/",
        {"rows": [{"id": "skill_group:billing", "approved": True}]},
        format="json",
    )

    busy = SyncRun.objects.create(
        server=server, state=SyncRunState.VERIFYING, started_at=SyncRun.objects.get(pk=run_id).started_at
    )
    second = admin_api.post("/api/v1/sync-runs/", {"server": server.pk}, format="json")
    assert second.status_code == 409
    assert second.json()["busy_run"] == busy.pk
    assert "already in progress" in second.json()["detail"]
    blocked = admin_api.post(f"/api/v1/sync-runs/{run_id}/sync/", {}, format="json")
    assert blocked.status_code == 409
    SyncRun.objects.filter(pk=busy.pk).update(state=SyncRunState.FAILED, finished_at=busy.started_at)

    aw_call(connected_aw, "create_skill_group", skill_group_id="vip", name="VIP")
    stale = admin_api.post(f"/api/v1/sync-runs/{run_id}/sync/", {}, format="json")
    assert stale.status_code == 409
    assert stale.json()["stale"] is True
    assert "Run a new verify" in stale.json()["detail"]
    assert admin_api.get(f"/api/v1/sync-runs/{run_id}/").json()["state"] == SyncRunState.STALE


def test_an_unreachable_icm_is_503_when_syncing(admin_api, server, connected_aw):
    aw_call(connected_aw, "create_skill_group", skill_group_id="billing", name="Billing")
    run_id = admin_api.post("/api/v1/sync-runs/", {"server": server.pk}, format="json").json()["id"]
    admin_api.post(
        f"/api/v1/sync-runs/{run_id}/approve/",
        {"rows": [{"id": "skill_group:billing", "approved": True}]},
        format="json",
    )
    connected_aw.kill()

    response = admin_api.post(f"/api/v1/sync-runs/{run_id}/sync/", {}, format="json")

    assert response.status_code == 503
    assert response.has_header("Retry-After")
    assert Link.objects.get(server=server, kind=PeerKind.ADMIN_WORKSTATION).epoch == 1


def test_the_schema_documents_the_endpoints(admin_api, tmp_path):
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    paths = admin_api.get("/api/v1/schema/", {"format": "json"}).json()["paths"]

    for path in (
        "/api/v1/wizards/",
        "/api/v1/wizards/{id}/",
        "/api/v1/sync-runs/",
        "/api/v1/sync-runs/{id}/approve/",
        "/api/v1/sync-runs/{id}/sync/",
    ):
        assert path in paths
    assert set(paths["/api/v1/sync-runs/{id}/sync/"]["post"]["responses"]) >= {"202", "400", "409", "503"}
