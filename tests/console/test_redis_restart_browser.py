"""A Redis restart under an open Administration desktop (issue 8, point 3).

Real headless Chromium on a real node (uvicorn, the project's ASGI app) whose Redis is a
server of this test's own. Redis is stopped, a switch-over is committed while it is down
(its live update is lost: the database does not need Redis), Redis comes back, and the
page shows the switch within 10 s without a reload: the heartbeat carries Redis's run id,
the page sees it changed and reconnects for a fresh snapshot.
"""

from __future__ import annotations

import pytest

from collabadmin import embedded_redis
from failover.choices import Health, PeerKind, PeerPriority
from failover.models import Link
from failover.services.switchover import link_switchover
from tests.console.test_overview_browser import CHROMIUM, outside_playwrights_loop
from tests.desktop.test_agent_browser import wait_for_http
from tests.factories import PASSWORD, PeerFactory, ServerFactory, StaffFactory
from tests.failover.test_crashes import restartable_redis  # noqa: F401  (fixture)
from tests.pairs import set_health
from tests.processes import free_port, start_node

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BACK_IN_SYNC_MS = 10_000  # the product's promise


def test_an_open_desktop_is_back_in_sync_within_10_s_after_a_redis_restart(
    restartable_redis,  # noqa: F811
    tmp_path,
    settings,
    monkeypatch,
):
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    server = ServerFactory(name="routing-a")
    primary = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.PRIMARY, name="mb-1")
    secondary = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.SECONDARY, name="mb-2")
    set_health(primary, Health.UP)
    set_health(secondary, Health.UP)
    link = Link.objects.get(server=server, kind=PeerKind.MEDIA_BLENDER)
    staff = StaffFactory(username="operator")
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    staff.set_password(PASSWORD)
    staff.save(update_fields=["password"])

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "node.log"
    # No monitor: nothing but this test changes the pair, so only the restart can explain a miss.
    node = start_node("routing-a", port, log, COLLABADMIN_RUN_MONITOR="0")
    try:
        wait_for_http(f"{base}/healthz", timeout=30, log=log)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
            )
            try:
                page = browser.new_page()
                page.goto(f"{base}/")
                page.get_by_label("Username").fill("operator")
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Log in").click()
                expect(page.locator("[data-live-status]")).to_have_attribute("data-state", "live", timeout=10_000)
                expect(page.locator(f"#peer-{primary.pk}")).to_have_attribute("data-display-state", "connected")
                page.evaluate("window.__sameDocument = true")

                embedded_redis.stop(restartable_redis)
                outside_playwrights_loop(
                    link_switchover, link_id=link.pk, actor="system:test", reason="while Redis is down"
                )
                embedded_redis.ensure_running(restartable_redis)

                expect(page.locator(f"#peer-{secondary.pk}")).to_have_attribute(
                    "data-display-state", "connected", timeout=BACK_IN_SYNC_MS
                )
                expect(page.locator(f"#peer-{primary.pk}")).to_have_attribute("data-display-state", "standby")
                assert page.evaluate("window.__sameDocument") is True, "the page was not reloaded"
            finally:
                browser.close()
    finally:
        node.terminate()
        node.wait(timeout=15)
