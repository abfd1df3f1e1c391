"""Acknowledge and silence in real headless Chromium against a real node (issue 19, point 2):
the action dialog asks for the note, then for a silence's minutes and reason, and the
overview shows who acknowledged and until when the server is silenced."""

from __future__ import annotations

import pytest

from common.actors import MONITOR
from failover.choices import AlertKind, AlertSeverity, AuditAction
from failover.models import Alert, AuditEntry
from failover.services.alert_actions import server_silence
from failover.services.alerts import alert_raise
from tests.console.test_overview_browser import CHROMIUM
from tests.desktop.test_agent_browser import wait_for_http
from tests.factories import PASSWORD, ServerFactory, StaffFactory
from tests.processes import free_port, start_node

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_acknowledge_then_silence_and_end_it_in_the_browser(tmp_path, settings, monkeypatch):
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = ServerFactory(name="routing-a")
    alert = alert_raise(
        server=server,
        kind=AlertKind.CONFIG_OUT_OF_SYNC,
        message="Configuration may be out of sync",
        severity=AlertSeverity.WARNING,
        actor=MONITOR,
    )
    staff = StaffFactory(username="operator")
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    staff.set_password(PASSWORD)
    staff.save(update_fields=["password"])

    log = tmp_path / "node.log"
    node = start_node("routing-a", port, log)
    try:
        wait_for_http(f"{base}/healthz", timeout=30, log=log)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
            )
            try:
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                page.goto(f"{base}/")
                page.get_by_label("Username").fill("operator")
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Log in").click()
                expect(page).to_have_url(f"{base}/")

                page.locator(f"[data-alert-id='{alert.pk}']").get_by_role("button", name="Acknowledge").click()
                dialog = page.get_by_role("dialog")
                expect(dialog).to_be_visible()
                expect(dialog.get_by_label("Minutes")).to_be_hidden()  # not a silence
                dialog.get_by_label("Note").fill("Running Verify and Sync")
                dialog.get_by_role("button", name="Acknowledge the alert on routing-a").click()
                expect(page.get_by_text("Acknowledged routing-a")).to_be_visible()
                expect(page.locator("[data-alert-acknowledged]")).to_be_visible()
                expect(page.locator(".alert-note")).to_have_text("Running Verify and Sync")
                expect(page.locator("[data-count=alerts-acknowledged] .num")).to_have_text("1")

                page.get_by_role("button", name="Silence alerts of routing-a for a maintenance window").click()
                minutes = dialog.get_by_label("Minutes")
                expect(minutes).to_be_visible()
                expect(minutes).to_have_value("60")
                minutes.fill("30")
                dialog.get_by_label("Reason").fill("AW upgrade")
                dialog.get_by_role("button", name="Silence routing-a's alerts").click()
                expect(page.locator("[data-silenced-until]")).to_be_visible()
                expect(page.locator("[data-count=alerts-silenced] .num")).to_have_text("1")

                page.get_by_role("button", name="End silence of routing-a's alerts").click()
                expect(dialog.get_by_label("Minutes")).to_be_hidden()
                dialog.get_by_label("Reason").fill("Upgrade done")
                dialog.get_by_role("button", name="End the silence of routing-a").click()
                expect(page.get_by_text("routing-a's alerts are no longer silenced.")).to_be_visible()
                expect(page.locator("[data-count=alerts-silenced] .num")).to_have_text("0")
            finally:
                browser.close()
        assert Alert.objects.get(pk=alert.pk).acknowledge_note == "Running Verify and Sync"
        assert server_silence(server.pk) is None
        silenced = AuditEntry.objects.get(action=AuditAction.SERVER_SILENCED)
        assert (silenced.actor_id, silenced.reason, silenced.after["minutes"]) == (staff.pk, "AW upgrade", 30)
        assert AuditEntry.objects.get(action=AuditAction.SERVER_UNSILENCED).reason == "Upgrade done"
    finally:
        node.terminate()
        try:
            node.wait(timeout=10)
        except Exception:
            node.kill()
            node.wait()
