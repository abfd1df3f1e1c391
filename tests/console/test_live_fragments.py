"""One render of a live fragment shared by every watcher allowed to see it (issue 18 point 2,
console/live_fragments.py): keyed by view, filters, access class and time zone, reused for
every request whose page needs no newer event than the render reflects, rendered at most
once at a time per key; and a page never replaces what it shows with an older answer."""

from __future__ import annotations

import gzip
import re
import threading

import pytest
from django.db import connection
from django.http import HttpResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from common import live, roles
from common.actors import MONITOR
from common.redis_client import shared_redis
from console import live_fragments
from console.live_fragments import SEQ_HEADER, SharedRenders, shared_renders
from failover.models import Server
from sessions.choices import AgentState, EndReason
from sessions.services.lifecycle import session_end
from tests.console.session_rows import queued_session
from tests.console.test_console_browser_sessions import (
    CHROMIUM,
    LIVE_TIMEOUT_MS,
    administrator,
    fetching_node,  # noqa: F401  (fixture)
)
from tests.desktop.conftest import logged_in, routed_session
from tests.factories import PASSWORD, StaffFactory, UserFactory, role_user

pytestmark = pytest.mark.django_db

OVERVIEW = "/partials/overview/"
SESSIONS = "/console/sessions/"
WAIT_S = 10.0


def logged_in_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def new_event() -> int:
    """A live event through the real sender, numbered; returns the counter after it."""
    live.send_now("test.changed", {}, [live.STATUS_GROUP])
    assert live.flush()
    return live.current_sequence()


# The access class of a superuser (every permission) and of a viewer.
EVERYTHING = ",".join(permission.codename for permission in roles.PERMISSIONS)
VIEW_ONLY = roles.VIEW_DESKTOP.codename


def key(path: str, access: str, query: str = "", zone: str | None = None) -> tuple[str, str, str, str]:
    return (path, query, access, zone or timezone.get_default_timezone_name())


def test_two_administrators_on_the_same_view_share_one_render():
    olivia, peter = logged_in_client(StaffFactory()), logged_in_client(StaffFactory())

    first = olivia.get(OVERVIEW)
    with CaptureQueriesContext(connection) as second_queries:
        second = peter.get(OVERVIEW)

    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert first[SEQ_HEADER] == second[SEQ_HEADER]
    assert first["X-Live-Rendered"] == second["X-Live-Rendered"]
    assert shared_renders.renders(key(OVERVIEW, EVERYTHING)) == 1
    # The second administrator's request only looked up the log-in: no render queries.
    assert len(second_queries) <= 2, [q["sql"] for q in second_queries]


def test_a_shared_render_leaves_gzipped_to_browsers_that_accept_it():
    olivia, peter = logged_in_client(StaffFactory()), logged_in_client(StaffFactory())

    plain = olivia.get(OVERVIEW)
    packed = peter.get(OVERVIEW, HTTP_ACCEPT_ENCODING="gzip, deflate, br")

    assert "Content-Encoding" not in plain
    assert "Accept-Encoding" in plain["Vary"]
    assert packed["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.content) == plain.content
    assert len(packed.content) < len(plain.content) / 3


def test_users_whose_access_or_zone_differs_never_share_a_render():
    superuser = logged_in_client(StaffFactory())
    viewer = logged_in_client(role_user(roles.VIEWER))
    in_tokyo = logged_in_client(StaffFactory())
    in_tokyo.cookies["tz"] = "Asia/Tokyo"
    not_staff = logged_in_client(UserFactory())

    for client in (superuser, viewer, in_tokyo):
        assert client.get(OVERVIEW).status_code == 200
    refused = not_staff.get(OVERVIEW)

    assert refused.status_code == 403  # no role: refused before any render
    assert shared_renders.renders(key(OVERVIEW, EVERYTHING)) == 1
    assert shared_renders.renders(key(OVERVIEW, VIEW_ONLY)) == 1
    assert shared_renders.renders(key(OVERVIEW, EVERYTHING, zone="Asia/Tokyo")) == 1
    assert shared_renders.renders(key(OVERVIEW, "none")) == 0


def test_filters_are_part_of_the_key_and_the_sequence_number_is_not():
    client = logged_in_client(StaffFactory())
    seq = live.current_sequence()

    client.get(f"{SESSIONS}?fragment=1&state=open&live_seq={seq}")
    client.get(f"{SESSIONS}?state=open&fragment=1")
    client.get(f"{SESSIONS}?fragment=1&state=queued")

    assert shared_renders.renders(key(SESSIONS, EVERYTHING, "state=open")) == 1
    assert shared_renders.renders(key(SESSIONS, EVERYTHING, "state=queued")) == 1


def test_a_newer_event_makes_a_new_render_that_older_numbers_keep_sharing(server):
    client = logged_in_client(StaffFactory())
    before = new_event()
    first = client.get(f"{SESSIONS}?fragment=1&live_seq={before}")
    queued_session(server, caller_name="Grace Hopper")
    after = new_event()

    # A page that has heard only of the older event is served the render it needs.
    same = client.get(f"{SESSIONS}?fragment=1&live_seq={before}")
    # The page told of the newer event gets a render made after it, with the new row.
    newer = client.get(f"{SESSIONS}?fragment=1&live_seq={after}")

    assert int(first[SEQ_HEADER]) >= before
    assert same.content == first.content
    assert b"Grace Hopper" not in same.content
    assert int(newer[SEQ_HEADER]) >= after
    assert b"Grace Hopper" in newer.content
    assert shared_renders.renders(key(SESSIONS, EVERYTHING)) == 2


def test_resyncs_share_a_recent_render_and_never_an_older_one(server, monkeypatch):
    """A request without a number (the page's resync, there to heal an event lost on the
    way) takes a render started at most RECENT_SECONDS before, never an older one."""
    client = logged_in_client(StaffFactory())
    client.get(f"{SESSIONS}?fragment=1")
    queued_session(server, caller_name="Grace Hopper")  # its event "lost": none is sent

    shared = client.get(f"{SESSIONS}?fragment=1")
    monkeypatch.setattr(live_fragments, "RECENT_SECONDS", 0.0)  # as if the render had aged
    resync = client.get(f"{SESSIONS}?fragment=1")

    assert b"Grace Hopper" not in shared.content
    assert b"Grace Hopper" in resync.content
    assert shared_renders.renders(key(SESSIONS, EVERYTHING)) == 2


CHARTS = re.compile(r'<div class="charts" data-region="charts">.*?</section>', re.DOTALL)


def test_the_events_the_overview_ignores_leave_its_fragment_as_it_was(
    agent, mb_pair, django_capture_on_commit_callbacks
):
    """templates/console/overview.html tells console.js to ignore session.changed and
    agent.changed: the overview must show nothing they change (its charts follow time and
    sessions.sampled, so they are left out of the comparison)."""
    client = logged_in_client(StaffFactory())
    session = routed_session(logged_in(agent, AgentState.READY), caller_name="Ada Lovelace")
    before = client.get(OVERVIEW)

    with django_capture_on_commit_callbacks(execute=True) as sent:
        session_end(session_id=session.pk, actor=MONITOR, reason=EndReason.CALLER_LEFT)
    assert live.flush()
    after = client.get(f"{OVERVIEW}?live_seq={live.current_sequence()}")

    assert sent
    assert int(after[SEQ_HEADER]) > int(before[SEQ_HEADER])
    assert CHARTS.sub("", after.content.decode()) == CHARTS.sub("", before.content.decode())


def test_a_redis_restart_never_takes_the_number_back(server):
    """Redis keeps nothing on disk: a restart loses the counter. Read back as 0, a render
    would be numbered below what the pages show (they would drop it) and the renders from
    before the restart would serve changes made while Redis was down."""
    client = logged_in_client(StaffFactory())
    before = client.get(f"{SESSIONS}?fragment=1&live_seq={new_event()}")
    shared_redis().delete(live.SEQUENCE_KEY)  # what a restart loses
    queued_session(server, caller_name="Grace Hopper")  # committed while its event was lost

    after_restart = live.current_sequence()
    answer = client.get(f"{SESSIONS}?fragment=1&live_seq={after_restart}")  # the new snapshot's number

    assert after_restart > int(before[SEQ_HEADER])
    assert int(answer[SEQ_HEADER]) >= after_restart
    assert b"Grace Hopper" in answer.content


# --- Single flight, on the cache itself ----------------------------------------------------------


def start(target, *args) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(target(*args)), daemon=True)
    thread.start()
    return thread, out


def test_concurrent_requests_for_one_key_wait_for_a_single_render():
    renders = SharedRenders()
    entered, gate = threading.Event(), threading.Event()
    made: list[int] = []

    def render() -> HttpResponse:
        made.append(1)
        entered.set()
        assert gate.wait(WAIT_S)
        return HttpResponse(f"render {len(made)}")

    the_key = key(OVERVIEW, VIEW_ONLY)
    wanted = new_event()
    first = start(renders.get, the_key, wanted, render)
    assert entered.wait(WAIT_S)
    others = [start(renders.get, the_key, wanted, render) for _ in range(5)]
    # A page told of a later event needs a render started after it: one more, after this one.
    later = new_event()
    newer = start(renders.get, the_key, later, render)
    gate.set()
    for thread, _ in (first, *others, newer):
        thread.join(WAIT_S)

    shared, after = first[1][0], newer[1][0]
    assert shared.content == b"render 1"
    assert shared.seq >= wanted
    assert after.content == b"render 2"
    assert after.seq >= later
    # The waiters got that render (one that came late may get the newer one: it serves too).
    assert all(out[0] in (shared, after) for _, out in others)
    assert len(made) == renders.renders(the_key) == 2


def test_an_answer_that_is_not_a_plain_page_is_never_shared():
    renders = SharedRenders()
    the_key = key(OVERVIEW, VIEW_ONLY)

    answer = renders.get(the_key, live.current_sequence(), lambda: HttpResponse("gone", status=503))

    assert answer.status_code == 503
    assert renders.renders(the_key) == 0


# --- In the browser: an older answer never replaces a newer one -----------------------------------

STALE_WATCH = """
(() => {
  window.__staleSeen = false;
  document.addEventListener("DOMContentLoaded", () => {
    const container = document.querySelector("[data-live-partial]");
    const check = () => { if (container.textContent.includes("Stale Caller")) window.__staleSeen = true; };
    new MutationObserver(check).observe(container, { subtree: true, childList: true, characterData: true });
  });
})();
"""


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_older_answer_never_replaces_what_the_page_shows(fetching_node, monkeypatch, settings):  # noqa: F811
    """A fragment answer numbered below the one the page shows (another node's older render,
    behind the balancer) is dropped, even though it is the answer to the newest request;
    the page then converges on the next event."""
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    administrator("olivia", "Olivia", "Stone")
    server = Server.objects.get(name="routing-a")
    first_caller = queued_session(server, caller_name="Ada Lovelace")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            context = browser.new_context()
            context.add_init_script(STALE_WATCH)
            page = context.new_page()
            page.goto(f"{fetching_node}/login/?next=/console/sessions/")
            page.get_by_label("Username").fill("olivia")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            expect(page.locator("[data-live-status]")).to_have_attribute("data-state", "live", timeout=LIVE_TIMEOUT_MS)
            expect(page.locator(f"#session-{first_caller.pk}")).to_be_visible()

            # A genuine refresh, to learn the number the page shows.
            with page.expect_response(lambda r: "fragment=1" in r.url, timeout=LIVE_TIMEOUT_MS) as genuine:
                new_event()
            shown = int(genuine.value.headers["x-live-seq"])

            def older_answer(route) -> None:
                real = route.fetch()
                body = real.text().replace("Ada Lovelace", "Stale Caller")
                headers = {k: v for k, v in real.headers.items() if k not in ("content-encoding", "content-length")}
                route.fulfill(status=200, body=body, headers={**headers, "x-live-seq": str(shown - 1)})

            fragments = re.compile(r"/console/sessions/\?fragment=1")
            page.route(fragments, older_answer)
            with page.expect_response(lambda r: "fragment=1" in r.url, timeout=LIVE_TIMEOUT_MS):
                new_event()
            page.unroute(fragments)

            second_caller = queued_session(server, caller_name="Grace Hopper")
            new_event()
            # The next genuine answer is applied (refreshes are one at a time, in order: the
            # older answer was handled before it).
            expect(page.locator(f"#session-{second_caller.pk}")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
            expect(page.locator(f"#session-{first_caller.pk}")).to_contain_text("Ada Lovelace")
            assert page.evaluate("window.__staleSeen") is False
        finally:
            browser.close()
