"""The add-agent wizard as a new administrator meets it (issue 15, point 6): it asks why,
gives the policy's session slots, and says how the new agent gets a password (a one-time
set-password link, shown to the administrator; no password is generated or stored).

A real Admin Workstation process; Celery is eager, so a launched wizard runs when its
request commits (transactional tests)."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from failover.choices import AuditAction, WizardState
from failover.models import AuditEntry, Policy, WizardRun
from failover.services.policy import policy_update
from sessions.models import Agent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LINK = re.compile(r'value="(http://testserver/reset/[^"]+)"')
NEW_PASSWORD = "a-long-and-new-passphrase-42"


def add_agent_form(server, **extra) -> dict:
    return {
        "server": server.pk,
        "kind": "add_agent",
        "agent_id": "ann",
        "name": "Ann Lee",
        "username": "ann",
        "skill_groups": ["sales"],
        "enabled": "1",
        **extra,
    }


def test_the_page_asks_for_a_reason_and_audits_it(admin_client, server, connected_aw):
    page = admin_client.get("/console/wizards/", {"server": server.pk}).content.decode()
    for wizard in ("add-agent", "change-skills", "remove-agent", "add-group"):  # every wizard asks
        assert f'<textarea id="{wizard}-reason" name="reason"' in page
    assert "session slots (the policy's default) and a log-in without a password" in page

    refused = admin_client.post("/console/wizards/start/", add_agent_form(server), follow=True)

    assert "Add an agent: not started, give a reason." in refused.content.decode()
    assert not WizardRun.objects.exists()

    admin_client.post("/console/wizards/start/", add_agent_form(server, reason="Ann joins sales on Monday"))

    started = AuditEntry.objects.get(action=AuditAction.WIZARD_STARTED)
    assert started.reason == "Ann joins sales on Monday"
    assert WizardRun.objects.get().state == WizardState.COMPLETED


def test_the_new_agent_gets_the_policys_slots_and_sets_a_password_with_the_link_shown_once(
    admin_client, admin_user, server, connected_aw
):
    policy_update(actor=admin_user, reason="Two at a time for new agents", changes={"agent_max_sessions": 3})
    response = admin_client.post(
        "/console/wizards/start/", add_agent_form(server, reason="Ann joins sales"), follow=True
    )

    agent = Agent.objects.select_related("user").get(icm_id="ann")
    assert agent.max_sessions == 3 == Policy.current().agent_max_sessions
    assert not agent.user.has_usable_password()
    html = response.content.decode()
    assert "Create agent ann on this server (3 session slots)" in html
    assert "User name <code>ann</code>" in html
    link = LINK.search(html).group(1)
    assert "No password yet: give Ann Lee this link to choose one." in html
    # Nothing of the link is kept: not in the run, its steps or the audit history.
    for stored in (
        str(WizardRun.objects.values("params", "step_log").get()),
        *AuditEntry.objects.values_list("after", flat=True),
    ):
        assert "/reset/" not in str(stored)

    agent_browser = Client()
    form = agent_browser.get(link, follow=True)
    assert "Choose your password" in form.content.decode()
    done = agent_browser.post(
        form.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}, follow=True
    )
    assert "Your password is set" in done.content.decode()

    assert Client().login(username="ann", password=NEW_PASSWORD)
    again = Client().get(link, follow=True).content.decode()
    assert "This link does not work any more" in again
    run_page = admin_client.get(f"/console/wizards/{WizardRun.objects.get().pk}/").content.decode()
    assert "The password is set." in run_page
    assert "/reset/" not in run_page


def test_the_api_asks_for_a_reason_and_answers_the_set_password_link(admin_api, server, connected_aw):
    body = {
        "server": server.pk,
        "kind": "add_agent",
        "params": {"agent_id": "ann", "name": "Ann Lee", "skill_groups": ["sales"]},
    }

    refused = admin_api.post("/api/v1/wizards/", body, format="json")
    too_long = admin_api.post("/api/v1/wizards/", {**body, "reason": "x" * 301}, format="json")
    created = admin_api.post("/api/v1/wizards/", {**body, "reason": "Ann joins sales"}, format="json")

    assert refused.status_code == 400
    assert refused.json() == {"reason": ["This field is required."]}
    assert too_long.status_code == 400
    assert list(too_long.json()) == ["reason"]
    assert created.status_code == 201, created.json()
    run = created.json()
    assert run["state"] == WizardState.COMPLETED
    assert run["set_password_link"].startswith("http://testserver/reset/")
    assert admin_api.get(f"/api/v1/wizards/{run['id']}/").json()["set_password_link"].startswith("http://")
    assert Agent.objects.get(icm_id="ann").max_sessions == Policy.current().agent_max_sessions == 2
    assert AuditEntry.objects.get(action=AuditAction.WIZARD_STARTED).reason == "Ann joins sales"
