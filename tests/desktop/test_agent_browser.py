"""The Agent desktop in real headless Chromium against a real node (uvicorn, the project's
ASGI app, real Redis): an agent logs in, sees "caller hung up" arrive live, and ends the
session with one click (issue 4, point 6)."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django import db

from failover.choices import PeerKind
from sessions.choices import AgentState, EndReason, SessionState
from sessions.models import CollaborationSession
from sessions.services.routes import session_phone_hung_up
from tests.desktop.conftest import logged_in, routed_session
from tests.factories import PASSWORD, AgentFactory, PeerFactory, ServerFactory
from tests.processes import free_port, start_node

CHROMIUM = "/usr/bin/chromium"
LIVE_TIMEOUT_MS = 5000  # "without reload" means well within this


def wait_for_http(url: str, *, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (a local test URL)
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    pytest.fail(f"node not up at {url} within {timeout} s\n{log.read_text()[-3000:]}")


@pytest.fixture
def node(tmp_path) -> Iterator[str]:
    """A real web node for routing-a (no monitor: there are no peers to probe)."""
    ServerFactory(name="routing-a")
    port = free_port()
    log = tmp_path / "node.log"
    process = start_node("routing-a", port, log, COLLABADMIN_RUN_MONITOR="0")
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


def hang_up(session: CollaborationSession) -> None:
    """The caller hangs up, as the Media Blender reports it: through the routing service."""
    peer = PeerFactory(server=session.server, kind=PeerKind.MEDIA_BLENDER)
    assert session_phone_hung_up(session_id=session.pk, peer_id=peer.pk, agent_icm_id=session.agent.icm_id)


def outside_playwrights_loop(function: Callable[..., object], *args: object) -> None:
    """Run ``function`` in a thread of its own: Playwright's sync API keeps an event loop
    in the test's thread, where the live broadcast's ``async_to_sync`` refuses to run."""

    def run() -> None:
        try:
            function(*args)
        finally:
            db.connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(run).result(timeout=30)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_agent_sees_the_caller_hang_up_live_and_ends_the_session(node, monkeypatch, tmp_path, settings):
    from playwright.sync_api import expect, sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls in between
    # are plain sequential test code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    agent = AgentFactory(
        user__username="agent", user__first_name="Maria", user__last_name="Jensen", server__name="routing-a"
    )
    # The node checks the password with the production hashers, not the tests' fast one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    agent.user.set_password(PASSWORD)
    agent.user.save(update_fields=["password"])
    logged_in(agent, AgentState.READY)  # its earlier log-in; the page log-in below keeps it ready
    hanging = routed_session(agent, caller_name="Ada Lovelace", topic="Invoice 2024-117 looks wrong")
    routed_session(agent, caller_name="Alan Turing", topic="Cannot share my screen")
    routed_session(
        agent, caller_name="Grace Hopper", topic="Upgrade to the business plan", state=SessionState.IN_TRANSIT
    )

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            sockets: list[str] = []
            page.on("websocket", lambda socket: sockets.append(socket.url))
            fetched: list[str] = []
            page.on("request", lambda request: fetched.append(request.url) if "/partials/" in request.url else None)
            page.goto(f"{node}/agent/")
            expect(page).to_have_url(f"{node}/agent/login/?next=/agent/")
            page.get_by_label("Username").fill("agent")
            page.get_by_label("Password").fill(PASSWORD)
            # The desktop's snapshot fetches both panels at once: done before the change below.
            with page.expect_response(lambda response: response.url.endswith("/agent/partials/desk/")):
                page.get_by_role("button", name="Log in").click()

            expect(page).to_have_url(f"{node}/agent/")
            row = page.locator(f"#session-{hanging.pk}")
            expect(row).to_contain_text("Ada Lovelace")
            expect(row).to_contain_text("Phone connected")
            expect(page.locator("[data-live-status]")).to_have_attribute("data-state", "live", timeout=LIVE_TIMEOUT_MS)
            page.evaluate("window.__sameDocument = true")

            outside_playwrights_loop(hang_up, hanging)

            expect(row).to_contain_text("Caller hung up at", timeout=LIVE_TIMEOUT_MS)
            expect(page.locator("#live-announcer")).to_contain_text("Ada Lovelace hung up the phone")
            assert page.evaluate("window.__sameDocument") is True  # updated in place, no reload
            # The list came with the event (?push=sessions): the page's only fetch is its
            # snapshot's (both panels at once); a fetch for the change would be the list's.
            # The End button clicked below is the pushed list's: its CSRF token is proven too.
            assert sockets == [f"{node.replace('http', 'ws')}/ws/agent/?push=sessions"]
            assert fetched == [f"{node}/agent/partials/desk/"]
            # COLLABADMIN_SCREENSHOT_DIR keeps it (for the README); otherwise it goes with tmp_path.
            shots = Path(os.environ.get("COLLABADMIN_SCREENSHOT_DIR") or tmp_path)
            page.screenshot(path=str(shots / "agent-desktop.png"), full_page=True)

            page.get_by_role("button", name="End the session with Ada Lovelace").click()

            expect(page.get_by_text("The session with Ada Lovelace has ended.")).to_be_visible()
            expect(page.locator(f"#session-{hanging.pk}")).to_have_count(0)
            expect(page.get_by_text("Alan Turing")).to_be_visible()
        finally:
            browser.close()

    hanging.refresh_from_db()
    assert (hanging.state, hanging.end_reason, hanging.ended_by.username) == (
        SessionState.ENDED,
        EndReason.AGENT_ENDED,
        "agent",
    )
