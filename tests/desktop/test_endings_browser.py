"""Issue 15, point 4, in real headless Chromium against a real node: an administrator ends
an agent's session; the agent's desktop says who and why at once and after a reload, and
the caller's page says how it ended and stops asking to be kept open."""

from __future__ import annotations

import pytest

from sessions.choices import AgentState, EndReason
from sessions.models import CollaborationSession
from sessions.services.lifecycle import session_end
from tests.desktop.conftest import logged_in, routed_session
from tests.desktop.test_agent_browser import CHROMIUM, LIVE_TIMEOUT_MS, node, outside_playwrights_loop  # noqa: F401
from tests.factories import PASSWORD, AgentFactory, StaffFactory

# The caller's page polls every 3 s; "at once" for it is within two polls.
CALLER_TIMEOUT_MS = 8000


def end_as_admin(session: CollaborationSession, admin) -> None:
    session_end(session_id=session.pk, actor=admin, reason=EndReason.ADMIN_ENDED, note="Caller asked twice")


def launch(playwright):
    return playwright.chromium.launch(
        executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    )


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_agent_sees_live_who_ended_its_session_and_why_and_the_caller_is_told(node, monkeypatch, settings):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    agent = AgentFactory(user__username="agent", user__first_name="Maria", server__name="routing-a")
    agent.user.set_password(PASSWORD)
    agent.user.save(update_fields=["password"])
    logged_in(agent, AgentState.READY)
    admin = StaffFactory(first_name="Dana", last_name="Admin")
    ada = routed_session(agent, caller_name="Ada Lovelace", topic="Invoice question")

    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            desk = browser.new_page()
            desk.goto(f"{node}/agent/login/")
            desk.get_by_label("Username").fill("agent")
            desk.get_by_label("Password").fill(PASSWORD)
            desk.get_by_role("button", name="Log in").click()
            expect(desk.locator(f"#session-{ada.pk}")).to_contain_text("Ada Lovelace")
            expect(desk.locator("[data-live-status]")).to_have_attribute("data-state", "live", timeout=LIVE_TIMEOUT_MS)
            desk.evaluate("window.__sameDocument = true")
            caller = browser.new_page()
            caller.goto(f"{node}/request/{ada.pk}/")
            expect(caller.get_by_text("You are connected")).to_be_visible()
            expect(caller.get_by_text("Keep this page open")).to_be_visible()

            outside_playwrights_loop(end_as_admin, ada, admin)

            ended = desk.locator(f"#ended-{ada.pk}")
            expect(ended).to_contain_text("Ended by an administrator (Dana Admin)", timeout=LIVE_TIMEOUT_MS)
            expect(ended).to_contain_text("Caller asked twice")
            expect(desk.locator(f"#session-{ada.pk}")).to_have_count(0)
            expect(desk.locator("#live-announcer")).to_contain_text(
                "Your session with Ada Lovelace was ended by an administrator (Dana Admin): Caller asked twice."
            )
            assert desk.evaluate("window.__sameDocument") is True  # live, not a reload
            desk.reload()
            expect(desk.locator(f"#ended-{ada.pk}")).to_contain_text("Ended by an administrator (Dana Admin)")

            status = caller.locator(".queue-status")
            expect(status).to_contain_text(
                "The session was ended by an administrator of the contact centre.", timeout=CALLER_TIMEOUT_MS
            )
            expect(caller.get_by_text("Keep this page open")).to_have_count(0)
            expect(caller.get_by_text("You can close this page")).to_be_visible()
            expect(caller).to_have_title("Session ended")
        finally:
            browser.close()
