"""The overview in real headless Chromium against a real node (uvicorn, the project's ASGI
app with its health monitor, real Redis) and real Media Blender simulator processes: an
administrator logs in, sees the pair with its primary connected, the connected simulator
is SIGKILL-ed, and the page shows the switch without a reload (issue 5, point 6)."""

from __future__ import annotations

import functools
import gzip
import json
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django import db

from failover.choices import AuditAction, Health, PeerKind, PeerPriority
from failover.models import AuditEntry, Link, Peer, Policy
from failover.services.switchover import link_switchover
from tests.desktop.test_agent_browser import wait_for_http
from tests.factories import PASSWORD, PeerFactory, ServerFactory, StaffFactory
from tests.peering.conftest import start_peer  # noqa: F401  (fixture)
from tests.processes import free_port, start_node, stop_process
from tests.waiting import wait_until

CHROMIUM = "/usr/bin/chromium"
LIVE_TIMEOUT_MS = 10_000  # detection (3 probes of 200 ms, 1 s time-out) + switch + refresh, on a busy machine

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def outside_playwrights_loop(function: Callable[..., object], *args: object, **kwargs: object) -> None:
    """Run ``function`` in a thread of its own: Playwright's sync API keeps an event loop
    in the test's thread, where the live broadcast's ``async_to_sync`` refuses to run."""

    def run() -> None:
        try:
            function(*args, **kwargs)
        finally:
            db.connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(run).result(timeout=30)


def operator_who_logs_in(settings, **fields: str) -> object:
    """Staff user "operator" with the tests' PASSWORD, hashed as the node checks it (with
    the production hashers, not the tests' fast one)."""
    staff = StaffFactory(username="operator", **fields)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    staff.set_password(PASSWORD)
    staff.save(update_fields=["password"])
    return staff


def connected_name(link: Link) -> str | None:
    return link.peers().filter(connection="connected").values_list("name", flat=True).first()


def test_killing_the_connected_media_blender_switches_the_pair_on_the_page(
    start_peer,  # noqa: F811
    tmp_path,
    settings,
    monkeypatch,
):
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    policy = Policy.current()
    policy.probe_interval_ms, policy.probe_timeout_ms, policy.rise, policy.fall = 200, 1000, 2, 3
    policy.save()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = ServerFactory(name="routing-a", base_url=base)  # the monitor probes the node itself too
    simulators = {name: start_peer("media-blender", "--name", name) for name in ("routing-a-mb-1", "routing-a-mb-2")}
    for priority, name in enumerate(simulators, start=PeerPriority.PRIMARY):
        PeerFactory(
            server=server, kind=PeerKind.MEDIA_BLENDER, priority=priority, name=name, port=simulators[name].port
        )
    # The other pair, so the page shows the whole server as in production.
    for priority, name in enumerate(("routing-a-aw-1", "routing-a-aw-2"), start=PeerPriority.PRIMARY):
        workstation = start_peer("admin-workstation", "--name", name, "--data", str(tmp_path / f"{name}.json"))
        PeerFactory(server=server, kind=PeerKind.ADMIN_WORKSTATION, priority=priority, name=name, port=workstation.port)
    link = Link.objects.get(server=server, kind=PeerKind.MEDIA_BLENDER)
    primary, secondary = (Peer.objects.get(name=name) for name in simulators)
    staff = operator_who_logs_in(settings, first_name="Olivia", last_name="Stone")

    log = tmp_path / "node.log"
    node = start_node("routing-a", port, log, COLLABADMIN_RUN_MONITOR="1")
    try:
        wait_for_http(f"{base}/healthz", timeout=30, log=log)
        wait_until(
            lambda: connected_name(link) and link.peers().filter(health=Health.UP).count() == 2,
            timeout=15,
            message="both simulators up and one connected by the node's monitor",
            diagnostics=lambda: log.read_text()[-3000:],
        )
        if connected_name(link) != primary.name:  # "first one up" wins: make the primary the connected one
            outside_playwrights_loop(
                link_switchover,
                link_id=link.pk,
                actor="system:test",
                reason="start on the primary",
                to_peer_id=primary.pk,
            )

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
            )
            try:
                anonymous = browser.new_page()
                anonymous.goto(f"{base}/")
                expect(anonymous).to_have_url(f"{base}/login/?next=/")
                anonymous.close()

                page = browser.new_page(viewport={"width": 1440, "height": 900})
                sockets: list[str] = []
                page.on("websocket", lambda socket: sockets.append(socket.url))
                page.goto(f"{base}/")
                page.get_by_label("Username").fill("operator")
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Log in").click()
                expect(page).to_have_url(f"{base}/")

                first, second = page.locator(f"#peer-{primary.pk}"), page.locator(f"#peer-{secondary.pk}")
                expect(first).to_have_attribute("data-display-state", "connected")
                expect(second).to_have_attribute("data-display-state", "standby")
                expect(page.locator("[data-live-status]")).to_have_attribute("data-state", "live", timeout=5000)
                # The overview shows no session: its socket asks not to be sent their events, and
                # to be sent the fragment's render with the others (issue 18).
                assert sockets == [
                    f"ws://127.0.0.1:{port}/ws/status/?coalesce=1&ignore=session.changed%2Cagent.changed"
                    "&push=%2Fpartials%2Foverview%2F"
                ]
                epoch_before = int(page.locator(f"#link-{link.pk}").get_attribute("data-epoch"))
                page.evaluate("window.__sameDocument = true")
                refreshes: list[str] = []
                page.on("request", lambda request: refreshes.append(request.url) if is_live_refresh(request) else None)

                simulators[primary.name].kill()  # SIGKILL: a real crash of the connected Media Blender

                expect(second).to_have_attribute("data-display-state", "connected", timeout=LIVE_TIMEOUT_MS)
                expect(first).to_have_attribute("data-display-state", "down", timeout=LIVE_TIMEOUT_MS)
                expect(second.locator(".badge-peer")).to_have_text("Connected")
                expect(page.locator(f"#link-{link.pk}")).not_to_have_attribute("data-epoch", str(epoch_before))
                expect(page.locator("[data-region=events]")).to_contain_text("Automatic switchover")
                assert page.evaluate("window.__sameDocument") is True  # updated in place, no reload
                assert refreshes == []  # it came on the socket: nothing fetched for it

                # An action: confirm in the dialog with a reason (refused by the browser without one).
                page.get_by_role("button", name="Put routing-a-aw-2 into maintenance").click()
                dialog = page.get_by_role("dialog")
                expect(dialog).to_be_visible()
                dialog.get_by_role("button", name="Put routing-a-aw-2 into maintenance").click()
                expect(dialog).to_be_visible()  # no reason yet: not sent
                dialog.get_by_label("Reason").fill("Firmware upgrade")
                dialog.get_by_role("button", name="Put routing-a-aw-2 into maintenance").click()
                expect(page.get_by_text("routing-a-aw-2 is in maintenance.")).to_be_visible()
                aw_standby = page.locator("[data-peer=routing-a-aw-2]")
                expect(aw_standby).to_have_attribute("data-display-state", "maintenance")
                expect(second).to_have_attribute("data-display-state", "connected")
                # COLLABADMIN_SCREENSHOT_DIR keeps it (for the README); otherwise it goes with tmp_path.
                shots = Path(os.environ.get("COLLABADMIN_SCREENSHOT_DIR") or tmp_path)
                page.screenshot(path=str(shots / "admin-overview.png"), full_page=True)
            finally:
                browser.close()
        entry = AuditEntry.objects.get(action=AuditAction.PEER_MAINTENANCE_ON)
        assert (entry.actor_id, entry.reason) == (staff.pk, "Firmware upgrade")
    finally:
        stop_process(node)


def is_live_refresh(response) -> bool:
    """An answer to console.js's refresh after an event (it names the event: ?live_seq=)."""
    return "/partials/overview/" in response.url and "live_seq=" in response.url


def _fragment_frame(payload: str | bytes) -> bool:
    """A pushed fragment: the one binary message (gzipped JSON)."""
    return isinstance(payload, bytes)


@pytest.mark.parametrize("way", ["fetched", "pushed"])
def test_a_refresh_brings_only_the_changed_card_and_the_page_keeps_its_own(tmp_path, settings, monkeypatch, way):
    """console/live_blocks.py in the browser: after the first refresh the page names the
    render it shows; the next answer leaves out the cards it has (data-keep), console.js
    puts its own copies back, and the page then shows exactly what a whole render shows.
    Fetched (``LIVE_PUSH=0``: the page fetches after each event) and pushed (the render
    comes on the socket with the event, console/pushed_fragments.py; nothing fetched)."""
    from playwright.sync_api import expect, sync_playwright

    from failover.services.alert_actions import server_silence_start

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    servers = [ServerFactory(name=f"routing-{name}") for name in "abc"]
    for server in servers:
        for priority in (PeerPriority.PRIMARY, PeerPriority.SECONDARY):
            PeerFactory(
                server=server, kind=PeerKind.MEDIA_BLENDER, priority=priority, name=f"{server.name}-mb-{priority}"
            )
    operator_who_logs_in(settings)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "node.log"
    node = start_node("routing-a", port, log, LIVE_PUSH="1" if way == "pushed" else "0")
    try:
        wait_for_http(f"{base}/healthz", timeout=30, log=log)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                page.goto(f"{base}/")
                page.get_by_label("Username").fill("operator")
                page.get_by_label("Password").fill(PASSWORD)
                # The page's first refresh (whole: it names no render yet).
                with page.expect_websocket() as opened:
                    with page.expect_response(lambda response: "/partials/overview/" in response.url, timeout=10_000):
                        page.get_by_role("button", name="Log in").click()
                socket = opened.value
                expect(page.locator("[data-live-status]")).to_have_attribute("data-state", "live", timeout=5000)
                page.evaluate("window.__sameDocument = true")
                refreshes: list[str] = []
                page.on("request", lambda request: refreshes.append(request.url) if is_live_refresh(request) else None)

                # Each turn's answer is taken as the refresh that brings it arrives (a "response"
                # listener may run only after the page already shows it: seen once in CI).
                answers: list[dict] = []
                for turn, server in enumerate(servers[1:], start=1):
                    silence = functools.partial(
                        outside_playwrights_loop,
                        server_silence_start,
                        server_id=server.pk,
                        minutes=30,
                        actor="system:test",
                        reason=f"work {turn}",
                    )
                    if way == "pushed":
                        with socket.expect_event("framereceived", _fragment_frame, timeout=LIVE_TIMEOUT_MS) as frame:
                            silence()
                        message = json.loads(gzip.decompress(frame.value))
                        answers.append({"delta": message["delta"], "body": message["html"]})
                    else:
                        with page.expect_response(is_live_refresh, timeout=LIVE_TIMEOUT_MS) as refresh:
                            silence()
                        delta = refresh.value.all_headers().get("x-live-delta")
                        answers.append({"delta": delta, "body": refresh.value.text()})
                    expect(page.locator(f"#server-{server.pk} [data-silenced-until]")).to_have_attribute(
                        "title", f"work {turn}", timeout=LIVE_TIMEOUT_MS
                    )

                assert (refreshes == []) is (way == "pushed")
                # The second silence's refresh: a delta keeping the two cards the page had.
                assert answers[-1]["delta"] is not None
                last = answers[-1]["body"]
                kept = page.evaluate(
                    """(names) => names.map((name) => document.querySelector(`[data-block="${name}"]`)?.id || "")""",
                    re.findall(r'<template data-keep="([0-9a-f]+)">', last),
                )
                # routing-a and routing-b as the page had them (and the charts, which did not change)
                assert {f"server-{servers[0].pk}", f"server-{servers[1].pk}"} <= set(kept)
                assert f'id="server-{servers[2].pk}"' in last
                assert f'id="server-{servers[0].pk}"' not in last
                # What the page shows is what a whole render shows, region by region.
                shown, whole = page.evaluate(
                    """async () => {
                        const regions = (root) => Array.from(
                            root.querySelectorAll("[data-region]"), (r) => [r.dataset.region, r.innerHTML]
                        );
                        const answer = await fetch("/partials/overview/", {cache: "no-store"});
                        const fresh = document.createElement("template");
                        fresh.innerHTML = await answer.text();
                        return [regions(document.querySelector("[data-live-partial]")), regions(fresh.content)];
                    }"""
                )
                assert dict(shown)["topology"] == dict(whole)["topology"]
                assert page.evaluate("window.__sameDocument") is True
            finally:
                browser.close()
    finally:
        stop_process(node)
