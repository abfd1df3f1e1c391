"""Every desktop page passes axe-core with no violation at all (issue 15, point 14), and shows
its times in the viewer's zone in the one format (point 11), in real headless Chromium
against a real node (uvicorn, the project's ASGI app, real Redis) over an installation that
has been used (``realistic.build``, through the product's services).

The pages come from the URL configuration (``tests/pages/urls.py``): a page added later is
checked without touching this file. Each is opened as its user, after its live fragment has
been fetched again, with every axe rule (experimental ones included) and the pages' real
Content Security Policy. The browser reports a zone of UTC+05:30 and a US English locale:
a time formatted anywhere but the server would show "AM"/"PM" or another zone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from sessions.passwords import set_password_path
from tests.desktop.test_agent_browser import node  # noqa: F401  (fixture: a real node for routing-a)
from tests.pages import axe, urls
from tests.pages.realistic import Installation, build
from tests.peering.conftest import start_peer  # noqa: F401  (fixture: real simulator processes)

CHROMIUM = "/usr/bin/chromium"
LIVE_TIMEOUT_MS = 10_000
ZONE, ZONE_NAME = "Asia/Kolkata", "IST"
TIME_SHOWN = re.compile(rf"^\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d {ZONE_NAME}$")

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def used_installation(settings, start_peer) -> Installation:  # noqa: F811
    # The node checks passwords with the production hashers, not the tests' fast one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    return build(start_peer("admin-workstation", "--name", "routing-a-aw-1"))


def one_page_per_state(data: Installation) -> list[urls.Page]:
    """Every route; for the session pages one session of each state (they share a template)."""
    chosen: dict[tuple[str, str], str] = {}
    for session in data.sessions.values():
        chosen.setdefault((session.state, session.phone_leg), str(session.pk))
    shown = set(chosen.values())
    pages = urls.pages(data)
    return [page for page in pages if "session_id" not in page.route or any(pk in page.path for pk in shown)]


def log_in(page, base: str, path: str, username: str, password: str) -> None:
    page.goto(f"{base}{path}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def times_out_of_format(page) -> list[str]:
    texts = page.locator("time").all_inner_texts()
    return [text for text in texts if not TIME_SHOWN.match(text.strip())]


def check(page, base: str, path: str) -> list[str]:
    """Open ``path``; its axe violations and badly shown times (none for actions and fragments)."""
    from playwright.sync_api import expect

    # Asked first with the page's cookies: actions (POST only) and live fragments are not
    # pages to open (a fragment is checked inside its page).
    probe = page.request.get(f"{base}{path}", max_redirects=0)
    if probe.status == 405:
        return []
    if not probe.ok:
        return [f"{path}: {probe.status}"]
    if not probe.text().lstrip().lower().startswith("<!doctype"):
        return []
    response = page.goto(f"{base}{path}")
    assert response is not None, path
    assert response.ok, path
    live = page.locator("[data-live-status]")
    if live.count():
        expect(live).to_have_attribute("data-state", "live", timeout=LIVE_TIMEOUT_MS)
        page.wait_for_load_state("networkidle")  # the fragment fetched again after the snapshot
    problems = axe.describe(path, axe.violations(page))
    problems += [f"{path}: time shown as {text!r}" for text in times_out_of_format(page)]
    return problems


@pytest.fixture
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            yield launched
        finally:
            launched.close()


def new_page(browser, **options):
    context = browser.new_context(timezone_id=ZONE, locale="en-US", viewport={"width": 1280, "height": 900}, **options)
    return context.new_page()


def test_every_desktop_page_passes_axe_and_shows_times_in_the_viewers_zone(
    node,  # noqa: F811
    used_installation,
    browser,
    monkeypatch,
):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    data = used_installation
    pages = {urls.STAFF: new_page(browser), urls.AGENT: new_page(browser), urls.ANONYMOUS: new_page(browser)}
    problems: list[str] = []
    # The log-in pages, checked before logging in (they also set the zone cookie).
    problems += check(pages[urls.STAFF], node, "/login/")
    problems += check(pages[urls.AGENT], node, "/agent/login/")
    log_in(pages[urls.STAFF], node, "/login/?next=/", data.admin.get_username(), data.password)
    log_in(pages[urls.AGENT], node, "/agent/login/", data.agent.user.get_username(), data.password)
    opened = 2
    for page in one_page_per_state(data):
        if page.path in ("/login/", "/agent/login/"):
            continue
        problems += check(pages[page.viewer], node, page.path)
        opened += 1
    # The page on which a new agent chooses a password (the agent pages are done: the
    # agent's log-in becomes one without a password, like one a wizard creates).
    data.agent.user.set_unusable_password()
    data.agent.user.save(update_fields=["password"])
    problems += check(pages[urls.ANONYMOUS], node, set_password_path(data.agent.user))
    # And in the dark colour scheme, where contrast differs.
    dark = new_page(browser, color_scheme="dark")
    for path in ("/request/", "/agent/login/", "/login/"):
        problems += [f"(dark) {line}" for line in check(dark, node, path)]

    assert problems == [], "\n".join(problems)
    assert opened > 30  # the enumeration found the pages
