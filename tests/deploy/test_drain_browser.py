"""An agent's desktop through HAProxy while its server is drained and its node stopped
(issue 21, points 2 and 3), in real headless Chromium: the drain's banner arrives live,
and the node's SIGTERM closes the desktop's WebSocket with 1012, on which the page
reconnects at once through the balancer to the other node without ever showing
*Reconnecting…*."""

from __future__ import annotations

import signal
import time

import pytest

from failover.models import Server
from failover.services.drain import server_drain, server_undrain
from tests.deploy.test_haproxy import balanced  # noqa: F401 (the fixture)
from tests.desktop.conftest import logged_in
from tests.desktop.test_agent_browser import CHROMIUM, outside_playwrights_loop
from tests.factories import PASSWORD, AgentFactory
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LIVE_TIMEOUT_MS = 5000

# Counts the page's WebSockets and records every state the live indicator takes.
WATCH_SOCKETS = """
window.__sockets = 0;
window.__states = [];
const Native = window.WebSocket;
window.WebSocket = function (...args) { window.__sockets += 1; return new Native(...args); };
window.WebSocket.prototype = Native.prototype;
Object.assign(window.WebSocket, { OPEN: Native.OPEN, CLOSED: Native.CLOSED, CONNECTING: Native.CONNECTING });
document.addEventListener("DOMContentLoaded", () => {
  const status = document.querySelector("[data-live-status]");
  if (!status) return;
  new MutationObserver(() => window.__states.push(status.dataset.state)).observe(status, { attributes: true });
});
"""


def drain(name: str, reason: str) -> None:
    server_drain(server_id=Server.objects.get(name=name).pk, actor="test", reason=reason)


def undrain(name: str) -> None:
    server_undrain(server_id=Server.objects.get(name=name).pk, actor="test", reason="back")


def wait_status(balanced, name: str, prefix: str) -> None:  # noqa: F811 (the fixture's value)
    wait_until(
        lambda: balanced.status(name).startswith(prefix),
        timeout=15,
        message=f"HAProxy shows {name} {prefix}",
        diagnostics=balanced.logs,
    )


def test_the_drain_banner_arrives_live_and_sigterm_reconnects_the_desktop_silently(
    balanced,  # noqa: F811 (the fixture)
    monkeypatch,
    settings,
    capsys,
):
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    agent = AgentFactory(user__username="agent", server=Server.objects.get(name="routing-a"))
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    agent.user.set_password(PASSWORD)
    agent.user.save(update_fields=["password"])
    logged_in(agent)
    # The desktop must land on routing-a's node: routing-b is out of the balancer meanwhile.
    outside_playwrights_loop(drain, "routing-b", "test set-up")
    wait_status(balanced, "routing-b", "DOWN")
    front = balanced.url.replace("127.0.0.1", "localhost")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.add_init_script(WATCH_SOCKETS)
            page.goto(f"{front}/agent/login/?next=/agent/")
            page.get_by_label("Username").fill("agent")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            expect(page.locator("[data-live-status]")).to_have_attribute("data-state", "live", timeout=LIVE_TIMEOUT_MS)
            outside_playwrights_loop(undrain, "routing-b")
            wait_status(balanced, "routing-b", "UP")

            outside_playwrights_loop(drain, "routing-a", "kernel update")
            expect(page.locator("#server-draining")).to_contain_text("kernel update", timeout=LIVE_TIMEOUT_MS)
            wait_status(balanced, "routing-a", "DOWN")
            assert page.evaluate("window.__sockets") == 1

            stopped_at = time.monotonic()
            balanced.nodes["routing-a"].send_signal(signal.SIGTERM)
            wait_until(
                lambda: page.evaluate("window.__sockets") == 2,
                timeout=LIVE_TIMEOUT_MS / 1000,
                message="the desktop reconnected",
                diagnostics=balanced.logs,
            )
            reconnected = time.monotonic() - stopped_at
            expect(page.locator("[data-live-status]")).to_have_attribute("data-state", "live")
            balanced.nodes["routing-a"].wait(timeout=15)
            states = page.evaluate("window.__states")
            # Still told to finish: the fragment now comes from routing-b's node.
            expect(page.locator("#server-draining")).to_be_visible()
        finally:
            browser.close()
    assert "reconnecting" not in states
    assert "error" not in states
    with capsys.disabled():
        print(f"\ndesktop reconnected through HAProxy {reconnected * 1000:.0f} ms after its node's SIGTERM")
