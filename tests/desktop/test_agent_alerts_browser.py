"""Issue 20, point 3: the agent is told what happened, in real headless Chromium against a
real node. A session routed while the desktop is in the background changes the tab title,
plays a short tone (which the agent can turn off, remembered in the browser) and, where
allowed, shows a browser notification; a forced log-out and a server failure show a banner
saying why and what to do.

The browser's focus, its audio output and its notifications are instrumented with an init
script (headless Chromium has no window to focus, no speaker and no notification centre):
``document.hasFocus`` answers what the test says, and the calls made to
``AudioContext.createOscillator`` and ``new Notification`` are recorded.
"""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from failover.choices import Health
from failover.models import Server
from failover.services.servers import server_health_changed
from sessions.choices import AgentState, LogoutReason
from sessions.models import Agent
from sessions.services.lifecycle import agent_logout, publish_session
from tests.desktop.conftest import logged_in, routed_session
from tests.desktop.test_agent_browser import CHROMIUM, LIVE_TIMEOUT_MS, node, outside_playwrights_loop  # noqa: F401
from tests.factories import PASSWORD, AgentFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

INSTRUMENT = """
window.__focused = false;
document.hasFocus = () => window.__focused;
window.__tones = 0;
const RealContext = window.AudioContext;
window.AudioContext = class extends RealContext {
  createOscillator() { window.__tones += 1; return super.createOscillator(); }
};
window.__notes = [];
const RealNotification = window.Notification;
function RecordingNotification(title, options) {
  window.__notes.push({ title, body: options && options.body });
  this.close = () => {};
}
Object.defineProperty(RecordingNotification, "permission", { get: () => RealNotification.permission });
RecordingNotification.requestPermission = (...args) => RealNotification.requestPermission(...args);
window.Notification = RecordingNotification;
"""


def route_to(agent: Agent, caller: str) -> None:
    """A session routed to ``agent``, and the live update the routing service would send."""
    publish_session(routed_session(agent, caller_name=caller))


def fail_routing_a() -> None:
    """routing-a declared failed by the monitor's service, as when its node stops answering."""
    server = Server.objects.get(name="routing-a")
    outside_playwrights_loop(
        lambda: server_health_changed(server_id=server.pk, health=Health.DOWN, at=timezone.now(), error="refused")
    )


@pytest.fixture
def maria(settings) -> Agent:
    agent = AgentFactory(
        user__username="maria", user__first_name="Maria", user__last_name="Jensen", server__name="routing-a"
    )
    # The node checks the password with the production hashers, not the tests' fast one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    agent.user.set_password(PASSWORD)
    agent.user.save(update_fields=["password"])
    return logged_in(agent, AgentState.READY)


def open_desktop(browser, node: str, *, notifications: bool):  # noqa: F811
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    if notifications:
        context.grant_permissions(["notifications"], origin=node)
    context.add_init_script(INSTRUMENT)
    page = context.new_page()
    page.goto(f"{node}/agent/")
    page.get_by_label("Username").fill("maria")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{node}/agent/")
    expect(page.locator("[data-live-status]")).to_have_attribute("data-state", "live", timeout=LIVE_TIMEOUT_MS)
    return page


def launch(playwright):
    return playwright.chromium.launch(
        executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    )


def test_a_session_routed_in_the_background_changes_the_title_plays_a_tone_and_notifies(
    node,  # noqa: F811
    maria,
    monkeypatch,
):
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = open_desktop(browser, node, notifications=True)
            title = page.title()
            expect(page.get_by_text("Notifications on")).to_be_visible()
            expect(page.get_by_role("button", name="Turn on notifications")).to_be_hidden()
            sound = page.get_by_role("button", name="Sound for new sessions")
            expect(sound).to_have_attribute("aria-pressed", "true")

            outside_playwrights_loop(route_to, maria, "Ada Lovelace")

            expect(page.locator("#live-announcer")).to_contain_text("New session with Ada Lovelace")
            expect(page).to_have_title(f"(1) New session — {title}")
            assert page.evaluate("window.__tones") == 2  # two notes
            assert page.evaluate("window.__notes") == [
                {"title": "New session with Ada Lovelace", "body": "Open the Agent desktop to join."}
            ]

            # Coming back to the tab clears the title.
            page.evaluate("window.__focused = true; window.dispatchEvent(new Event('focus'))")
            expect(page).to_have_title(title)
            page.evaluate("window.__focused = false")

            # The tone turned off stays off after a reload; the title still changes.
            sound.click()
            expect(sound).to_have_attribute("aria-pressed", "false")
            page.reload()
            expect(page.locator("[data-live-status]")).to_have_attribute("data-state", "live", timeout=LIVE_TIMEOUT_MS)
            expect(page.get_by_role("button", name="Sound for new sessions")).to_have_attribute("aria-pressed", "false")
            assert page.evaluate("localStorage.getItem('collabadmin.agent.sound')") == "off"

            outside_playwrights_loop(route_to, maria, "Alan Turing")

            expect(page).to_have_title(f"(1) New session — {title}")
            assert page.evaluate("window.__tones") == 0
            assert [n["title"] for n in page.evaluate("window.__notes")] == ["New session with Alan Turing"]
        finally:
            browser.close()


def test_without_permission_no_notification_is_shown_and_the_button_asks_for_it(node, maria, monkeypatch):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = open_desktop(browser, node, notifications=False)
            title = page.title()
            expect(page.get_by_role("button", name="Turn on notifications")).to_be_visible()

            outside_playwrights_loop(route_to, maria, "Ada Lovelace")

            expect(page).to_have_title(f"(1) New session — {title}")
            assert page.evaluate("window.__notes") == []
        finally:
            browser.close()


def test_a_forced_log_out_shows_a_banner_saying_why_and_what_to_do(
    node,  # noqa: F811
    maria,
    monkeypatch,
):
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = open_desktop(browser, node, notifications=True)
            title = page.title()

            outside_playwrights_loop(
                lambda: agent_logout(
                    agent_id=maria.pk, actor="user:dana", reason=LogoutReason.ADMIN_FORCED, note="end of shift"
                )
            )

            banner = page.locator("#logged-out")
            expect(banner).to_contain_text("An administrator logged you out of the contact centre")
            expect(banner).to_contain_text("Your open sessions stay open: finish them.")
            expect(banner.get_by_role("link", name="log in again")).to_be_visible()
            expect(page).to_have_title(f"(1) Action needed — {title}")
            assert [n["title"] for n in page.evaluate("window.__notes")] == ["An administrator logged you out"]

            # Logged out already, the agent still learns that the server then failed.
            fail_routing_a()
            expect(page.locator("#server-failed")).to_contain_text("Your server routing-a has failed")
            expect(page.locator("#logged-out")).to_have_count(0)
        finally:
            browser.close()


def test_a_server_failure_shows_a_banner_saying_why_and_what_to_do(node, maria, monkeypatch):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = open_desktop(browser, node, notifications=True)
            title = page.title()
            fail_routing_a()

            failed = page.locator("#server-failed")
            expect(failed).to_contain_text(re.compile(r"Your server routing-a has failed"))
            expect(failed).to_contain_text("log in again once routing-a is back")
            expect(page.locator("#live-announcer")).to_contain_text("Your server has failed")
            expect(page).to_have_title(f"(1) Action needed — {title}")
            assert [n["title"] for n in page.evaluate("window.__notes")] == ["Your server has failed"]
        finally:
            browser.close()
