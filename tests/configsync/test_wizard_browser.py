"""A wizard's progress bar in real headless Chromium, advancing live: a real node (uvicorn,
the project's ASGI app, real Redis), a real Celery worker process running the wizard's
steps, and a real Admin Workstation simulator made slow (a latency fault) so each ICM
step takes long enough to be seen. The page is never reloaded."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from collabadmin.celery import app as celery_app
from collabadmin.celery import ping
from failover.choices import WizardState
from failover.models import WizardRun
from sessions.models import Agent
from tests.configsync.conftest import aw_call, icm_agents
from tests.console.test_overview_browser import outside_playwrights_loop
from tests.desktop.test_agent_browser import wait_for_http
from tests.factories import PASSWORD, AgentFactory, StaffFactory
from tests.processes import ROOT, child_database_url, free_port, project_env, start_node

CHROMIUM = "/usr/bin/chromium"
LATENCY_MS = 600  # per AW reply: an ICM step (hello + change) takes over a second
STEP_TIMEOUT_MS = 15_000

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker_queue(settings) -> Iterator[str]:
    """A real ``celery worker`` process on this test's own queue, sharing its database."""
    queue = f"test-sync-{uuid.uuid4().hex[:8]}"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "collabadmin",
            "worker",
            "-Q",
            queue,
            "--pool",
            "solo",
            "--loglevel",
            "WARNING",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=ROOT,
        env=project_env(DATABASE_URL=child_database_url(), REDIS_URL=settings.REDIS_URL, CELERY_QUEUE=queue),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield queue
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def test_the_wizard_progress_bar_advances_live(server, connected_aw, worker_queue, tmp_path, settings):
    from playwright.sync_api import expect, sync_playwright

    celery_app.conf.task_always_eager = False  # the real worker runs the steps (restored by the fixture)
    token = uuid.uuid4().hex
    assert ping.apply_async(args=[token], queue=worker_queue).get(timeout=30)["token"] == token  # worker ready
    staff = StaffFactory(username="operator")
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    staff.set_password(PASSWORD)
    staff.save(update_fields=["password"])
    slow = connected_aw.ctl("fault", "latency", str(LATENCY_MS))
    assert slow.returncode == 0, slow.stderr

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "node.log"
    node = start_node(server.name, port, log, COLLABADMIN_RUN_MONITOR="0", CELERY_QUEUE=worker_queue)
    try:
        wait_for_http(f"{base}/healthz", timeout=30, log=log)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
            )
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"{base}/console/wizards/?server={server.pk}")
                page.get_by_label("Username").fill("operator")
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Log in").click()
                expect(page.get_by_role("heading", name="Wizards", level=1)).to_be_visible()

                form = page.locator("section", has=page.get_by_role("heading", name="Add an agent"))
                form.get_by_label("Agent id (ICM)").fill("ann")
                form.get_by_label("Name", exact=True).fill("Ann Lee")
                form.get_by_label("Sales").check()
                form.get_by_label("Support").check()
                form.get_by_label("Reason").fill("Ann joins sales and support")
                form.get_by_role("button", name="Add the agent").click()

                expect(page.get_by_text("Add an agent started on routing-a.")).to_be_visible()
                expect(page.locator("[data-live-status]")).to_have_attribute("data-state", "live", timeout=10_000)
                page.evaluate("window.__sameDocument = true")
                bar = page.get_by_role("progressbar", name="Wizard progress")
                # Four steps: this server, then the ICM three times (slowed down): 25, 50, 75, 100.
                for percent in ("50", "75", "100"):
                    expect(bar).to_have_attribute("aria-valuenow", percent, timeout=STEP_TIMEOUT_MS)
                expect(page.locator(".wizard-state")).to_have_attribute("data-state", "completed")
                expect(page.locator(".step[data-status=done]")).to_have_count(4)
                assert page.evaluate("window.__sameDocument") is True  # updated in place, no reload
                shots = Path(os.environ.get("COLLABADMIN_SCREENSHOT_DIR") or tmp_path)
                page.screenshot(path=str(shots / "wizard-run.png"), full_page=True)

                # Verify and Sync from the navigation: both sides agree, shown live once the worker is done.
                page.get_by_role("link", name="Verify and Sync").click()
                page.get_by_role("button", name="Verify routing-a").click()
                expect(page.get_by_text("Verify of routing-a started")).to_be_visible()
                expect(page.locator(".sync-state")).to_have_attribute("data-state", "in_sync", timeout=STEP_TIMEOUT_MS)
                expect(page.get_by_text("This server and the ICM agree.")).to_be_visible()

                # A difference made behind the server's back: the plan shows it, the administrator
                # approves it and syncs; the progress and the report arrive live.
                def drift() -> None:
                    aw_call(connected_aw, "create_agent", agent_id="zed", name="Zed Hart", skill_groups=["sales"])
                    AgentFactory(server=server, icm_id="old", user__username="old")

                outside_playwrights_loop(drift)
                page.get_by_role("button", name="Verify routing-a").click()
                expect(page.locator(".sync-state")).to_have_attribute("data-state", "planned", timeout=STEP_TIMEOUT_MS)
                page.get_by_label("Approve: Agent zed exists only in the ICM").check()
                page.get_by_label("Approve: Agent old exists only on this server").check()
                page.screenshot(path=str(shots / "verify-and-sync-plan.png"), full_page=True)
                page.get_by_label("Reason for the sync").fill("drift found after the AW failover")
                page.get_by_role("button", name="Sync approved rows").click()
                expect(page.get_by_text("Sync not started")).to_contain_text("confirm the deletions")
                page.get_by_label("Approve: Agent zed exists only in the ICM").check()
                page.get_by_label("Approve: Agent old exists only on this server").check()
                page.get_by_label("Yes, also apply the approved fixes that delete something").check()
                page.get_by_label("Reason for the sync").fill("drift found after the AW failover")
                page.get_by_role("button", name="Sync approved rows").click()
                expect(page.get_by_text("Sync started")).to_be_visible()
                expect(page.locator(".sync-state")).to_have_attribute(
                    "data-state", "completed", timeout=STEP_TIMEOUT_MS
                )
                expect(page.get_by_role("progressbar", name="Sync progress")).to_have_attribute("aria-valuenow", "100")
                expect(page.locator("[data-region=report]")).to_contain_text("2 done, 0 failed")
                page.screenshot(path=str(shots / "verify-and-sync.png"), full_page=True)
            finally:
                browser.close()
    finally:
        node.terminate()
        try:
            node.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
    run = WizardRun.objects.get()
    assert run.state == WizardState.COMPLETED
    assert run.started_by == staff
    assert icm_agents(connected_aw)["ann"]["skill_groups"] == ["sales", "support"]
    assert set(Agent.objects.filter(server=server).values_list("icm_id", flat=True)) == {"ann", "zed"}
