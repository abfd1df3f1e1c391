"""Two administrators in real headless Chromium against a real node (uvicorn, the project's
ASGI app, real Redis): the first ends a session with a reason through the confirmation
dialog of the sessions page; the second, watching the open sessions in a browser of its own,
sees the row go without a reload (issue 5, point 6). Then the queue page, and a forced
log-out on the agents page done with the keyboard only."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from failover.choices import AuditAction
from failover.models import AuditEntry
from sessions.choices import AgentState, EndReason, LogoutReason, SessionState
from sessions.models import CollaborationSession
from tests.console.session_rows import queued_session
from tests.desktop.conftest import logged_in, routed_session
from tests.desktop.test_agent_browser import wait_for_http
from tests.factories import PASSWORD, AgentFactory, ServerFactory, StaffFactory
from tests.processes import free_port, start_node

CHROMIUM = "/usr/bin/chromium"
LIVE_TIMEOUT_MS = 10_000  # the broadcast and one fragment fetch, on a busy shared machine

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def node(tmp_path) -> Iterator[str]:
    """A real web node for routing-a (no health monitor: there are no peers to probe)."""
    yield from _node(tmp_path)


@pytest.fixture
def fetching_node(tmp_path) -> Iterator[str]:
    """The same, with its pages fetching their fragment after each event (``LIVE_PUSH=0``):
    what the fetch path does (also the way of a page whose push could not be made)."""
    yield from _node(tmp_path, LIVE_PUSH="0")


def _node(tmp_path, **env: str) -> Iterator[str]:
    ServerFactory(name="routing-a")
    port = free_port()
    log = tmp_path / "node.log"
    process = start_node("routing-a", port, log, COLLABADMIN_RUN_MONITOR="0", **env)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30, log=log)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except Exception:
            process.kill()
            process.wait()


def administrator(username: str, first_name: str, last_name: str):
    user = StaffFactory(username=username, first_name=first_name, last_name=last_name)
    user.set_password(PASSWORD)
    user.save(update_fields=["password"])
    return user


def test_a_session_ended_by_one_administrator_goes_from_the_others_page(node, monkeypatch, settings, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls around it are
    # plain sequential test code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    # The node checks passwords with the production hashers, not the tests' fast one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    olivia = administrator("olivia", "Olivia", "Stone")
    administrator("peter", "Peter", "Lind")
    agent = logged_in(
        AgentFactory(
            user__username="maria", user__first_name="Maria", user__last_name="Jensen", server__name="routing-a"
        ),
        AgentState.READY,
    )
    ada = routed_session(agent, caller_name="Ada Lovelace", topic="Invoice 2024-117 looks wrong")
    alan = routed_session(agent, caller_name="Alan Turing", topic="Cannot share my screen")
    grace = queued_session(agent.server, caller_name="Grace Hopper", topic="Upgrade to the business plan", waited=95)

    def log_in(page, username: str, path: str) -> None:
        page.goto(f"{node}{path}")
        expect(page).to_have_url(f"{node}/login/?next={path.replace('?', '%3F').replace('=', '%3D')}")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(f"{node}{path}")
        expect(page.locator("[data-live-status]")).to_have_attribute("data-state", "live", timeout=LIVE_TIMEOUT_MS)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            # Two browser contexts: two administrators, each with their own cookies and socket.
            first = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
            second = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            log_in(first, "olivia", "/console/sessions/")
            log_in(second, "peter", "/console/sessions/?state=open")

            watched = second.locator(f"#session-{ada.pk}")
            expect(watched).to_contain_text("Ada Lovelace")
            expect(second.locator(f"#session-{alan.pk}")).to_be_visible()
            expect(second.locator(f"#session-{grace.pk}")).to_be_visible()
            second.evaluate("window.__sameDocument = true")

            # The first administrator ends Ada's session through the dialog, with a reason.
            first.get_by_role("button", name="End session with Ada Lovelace").click()
            dialog = first.get_by_role("dialog")
            expect(dialog).to_be_visible()
            expect(dialog.get_by_label("Reason")).to_be_focused()
            confirm = dialog.get_by_role("button", name="End the session with Ada Lovelace")
            confirm.click()
            expect(dialog).to_be_visible()  # no reason yet: not sent
            dialog.get_by_label("Reason").fill("Duplicate of another request")
            confirm.click()
            expect(first.get_by_text("The session with Ada Lovelace has ended.")).to_be_visible()
            expect(first.locator(f"#session-{ada.pk}")).to_have_attribute("data-state", "ended")
            expect(first.locator(f"#session-{ada.pk}")).to_contain_text("Administrator ended")

            # The second administrator's page drops the row live: it lists open sessions only.
            expect(watched).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
            expect(second.locator(f"#session-{alan.pk}")).to_be_visible()
            expect(second.get_by_role("button", name="End session with Alan Turing")).to_be_enabled()
            expect(second.locator("[data-region=summary]")).to_contain_text("of 2 sessions")
            assert second.evaluate("window.__sameDocument") is True  # updated in place, no reload
            # COLLABADMIN_SCREENSHOT_DIR keeps it (for the README); otherwise it goes with tmp_path.
            shots = Path(os.environ.get("COLLABADMIN_SCREENSHOT_DIR") or tmp_path)
            first.screenshot(path=str(shots / "admin-sessions.png"), full_page=True)

            # The queue, then a forced log-out with the keyboard only.
            first.get_by_role("link", name="Queue").click()
            expect(first.locator(f"#queued-{grace.pk}")).to_contain_text("Grace Hopper")
            first.screenshot(path=str(shots / "admin-queue.png"), full_page=True)
            first.get_by_role("link", name="Agents").click()
            force = first.get_by_role("button", name="Force log-out of Maria Jensen")
            force.focus()
            first.keyboard.press("Enter")
            expect(dialog).to_be_visible()
            expect(dialog.get_by_label("Reason")).to_be_focused()
            first.keyboard.type("Left for the day without logging out")
            first.keyboard.press("Tab")  # Cancel
            first.keyboard.press("Tab")  # the confirmation
            expect(dialog.get_by_role("button", name="Force Maria Jensen to log out")).to_be_focused()
            first.keyboard.press("Enter")
            expect(first.get_by_text("Maria Jensen has been logged out.")).to_be_visible()
            expect(first.locator(f"#agent-{agent.pk}")).to_have_attribute("data-state", "logged_out")
            first.screenshot(path=str(shots / "admin-agents.png"), full_page=True)
        finally:
            browser.close()

    ada = CollaborationSession.objects.get(pk=ada.pk)
    assert (ada.state, ada.end_reason, ada.ended_by) == (SessionState.ENDED, EndReason.ADMIN_ENDED, olivia)
    entry = AuditEntry.objects.get(action=AuditAction.SESSION_ENDED, object_id=str(ada.pk))
    assert (entry.actor, entry.reason) == (olivia, "Duplicate of another request")
    assert CollaborationSession.objects.get(pk=alan.pk).state == SessionState.ACTIVE
    agent.refresh_from_db()
    assert (agent.state, agent.logout_reason) == (AgentState.LOGGED_OUT, LogoutReason.ADMIN_FORCED)
