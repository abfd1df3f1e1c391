"""The Content Security Policy in real headless Chromium against a real node (uvicorn, the
project's ASGI app, real Redis): the desktops, the caller form, the Django admin and the
API docs load and go live with zero violations reported, and every unsafe request the
pages send carries the CSRF token."""

from __future__ import annotations

import pytest

from sessions.choices import AgentState
from tests.desktop.conftest import logged_in, routed_session
from tests.desktop.test_agent_browser import node  # noqa: F401  (fixture: a real node for routing-a)
from tests.factories import PASSWORD, AgentFactory, StaffFactory

CHROMIUM = "/usr/bin/chromium"
LIVE_TIMEOUT_MS = 10_000
CSP_PHRASE = "Content Security Policy"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Recorded by the page itself too: a violation event does not depend on console wording.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


class Recorder:
    """Console messages about the policy and unsafe requests without a CSRF token."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.csp_messages: list[str] = []
        self.unsafe_requests: list[str] = []
        self.tokenless: list[str] = []

    def watch(self, page) -> None:
        page.add_init_script(RECORD_VIOLATIONS)
        page.on("console", self.on_console)
        page.on("request", self.on_request)

    def on_console(self, message) -> None:
        if CSP_PHRASE in message.text:
            self.csp_messages.append(f"{message.page.url if message.page else '?'}: {message.text}")

    def on_request(self, request) -> None:
        if request.method in ("GET", "HEAD", "OPTIONS") or not request.url.startswith(self.base):
            return
        self.unsafe_requests.append(f"{request.method} {request.url}")
        has_header = "x-csrftoken" in request.headers
        has_field = "csrfmiddlewaretoken=" in (request.post_data or "")
        if not (has_header or has_field):
            self.tokenless.append(f"{request.method} {request.url}")


def test_the_pages_load_and_go_live_without_a_single_policy_violation(node, monkeypatch, settings):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    # The node checks passwords with the production hashers, not the tests' fast one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    staff = StaffFactory(username="operator")
    agent = AgentFactory(user__username="agent", server__name="routing-a")
    for user in (staff, agent.user):
        user.set_password(PASSWORD)
        user.save(update_fields=["password"])
    logged_in(agent, AgentState.READY)
    routed_session(agent, caller_name="Ada Lovelace", topic="Invoice looks wrong")
    recorder = Recorder(node)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            # The Agent desktop, live over /ws/agent/.
            agent_page = browser.new_page(viewport={"width": 1280, "height": 800})
            recorder.watch(agent_page)
            agent_page.goto(f"{node}/agent/login/")
            agent_page.get_by_label("Username").fill("agent")
            agent_page.get_by_label("Password").fill(PASSWORD)
            agent_page.get_by_role("button", name="Log in").click()
            expect(agent_page).to_have_url(f"{node}/agent/")
            expect(agent_page.get_by_text("Ada Lovelace")).to_be_visible()
            expect(agent_page.locator("[data-live-status]")).to_have_attribute(
                "data-state", "live", timeout=LIVE_TIMEOUT_MS
            )
            assert agent_page.evaluate("window.__cspViolations") == []

            # The caller form (anonymous).
            caller_page = browser.new_context().new_page()
            recorder.watch(caller_page)
            caller_page.goto(f"{node}/request/")
            expect(caller_page.locator("form")).to_be_visible()
            assert caller_page.evaluate("window.__cspViolations") == []

            # Staff: the Django admin, the API docs, then the Administration desktop, live over /ws/status/.
            staff_page = browser.new_context().new_page()
            recorder.watch(staff_page)
            staff_page.goto(f"{node}/login/?next=/admin/")
            staff_page.get_by_label("Username").fill("operator")
            staff_page.get_by_label("Password").fill(PASSWORD)
            staff_page.get_by_role("button", name="Log in").click()
            expect(staff_page).to_have_url(f"{node}/admin/")
            staff_page.goto(f"{node}/admin/collab_sessions/agent/")
            expect(staff_page.locator("#result_list")).to_contain_text("agent")
            staff_page.goto(f"{node}/admin/collab_sessions/agent/{agent.pk}/change/")
            expect(staff_page.locator("#content h1")).to_be_visible()
            assert staff_page.evaluate("window.__cspViolations") == []

            staff_page.goto(f"{node}/api/v1/docs/")
            # Swagger UI rendered the schema: from our static files, started by a same-origin script.
            expect(staff_page.locator(".swagger-ui .info .title")).to_contain_text("collabadmin API", timeout=15_000)
            expect(staff_page.locator(".opblock").first).to_be_visible()
            assert staff_page.evaluate("window.__cspViolations") == []

            staff_page.goto(f"{node}/")
            expect(staff_page.locator("[data-live-status]")).to_have_attribute(
                "data-state", "live", timeout=LIVE_TIMEOUT_MS
            )
            assert staff_page.evaluate("window.__cspViolations") == []

            # Every other page of the Administration desktop's navigation, whatever it holds today.
            hrefs = staff_page.locator("nav[aria-label=Main] a").evaluate_all(
                "links => links.map(link => link.getAttribute('href'))"
            )
            pages = [href for href in hrefs if href.startswith("/") and not href.startswith(("/admin/", "/api/"))]
            assert len(pages) >= 1
            for href in pages:
                response = staff_page.goto(f"{node}{href}")
                assert response is not None
                assert response.ok, f"{href} answered {response.status}"
                expect(staff_page.locator("[data-live-status]")).to_have_attribute(
                    "data-state", "live", timeout=LIVE_TIMEOUT_MS
                )
                assert staff_page.evaluate("window.__cspViolations") == [], href

            assert recorder.csp_messages == []
            assert recorder.unsafe_requests  # the log-ins at least
            assert recorder.tokenless == []

            # The recorder does hear violations: an inline event handler is refused and reported.
            injected = '<img src="/static/none.png" onerror="window.__ran = 1">'
            agent_page.evaluate("(html) => document.body.insertAdjacentHTML('beforeend', html)", injected)
            agent_page.wait_for_function("window.__cspViolations.length > 0")
            assert agent_page.evaluate("window.__ran") is None
            assert any(CSP_PHRASE in message for message in recorder.csp_messages)
        finally:
            browser.close()
