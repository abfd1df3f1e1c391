"""A watcher's next fetch of a shared live fragment, answered on the event loop
(collabadmin/fragment_fast_path.py, issue 18): through the real ASGI application (the
node's HTTP stack: the fast path, then Django on its thread pool), real Redis, a real
database shared with the pool's threads (transactional tests).

What must hold: the answer is the one Django gave (same body, same headers but the
request id), for the same log-in and view only; anything the fast path cannot vouch for
goes to Django, which decides; a log-out is seen at once, a role taken away within
``VIEWER_SECONDS``; a fetch that needs the render under way waits for it on the loop.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import time

import pytest
from channels.testing import HttpCommunicator
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import HttpResponse
from django.test import Client

from collabadmin import asgi, embedded_redis
from collabadmin.fragment_fast_path import SharedFragmentFastPath, _render_serving, _Starters, recent_viewers
from common import access_epoch, live, roles
from common.redis_client import shared_redis
from console.live_fragments import shared_renders
from tests.factories import StaffFactory, role_user
from tests.websockets import run, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

OVERVIEW = "/partials/overview/"
SESSIONS = "/console/sessions/?fragment=1"


@pytest.fixture(autouse=True)
def _no_connection_outlives_its_request(monkeypatch):
    """The node's HTTP threads (a2wsgi's pool, in this process here) keep their database
    connection between requests (``DB_CONN_MAX_AGE``); in a test they must close it at the
    end of each request, or PostgreSQL refuses to drop the test database afterwards."""
    monkeypatch.setitem(connections.settings[DEFAULT_DB_ALIAS], "CONN_MAX_AGE", 0)


@pytest.fixture(autouse=True)
def _fresh():
    shared_renders.clear()
    recent_viewers.clear()
    yield
    shared_renders.clear()
    recent_viewers.clear()


def fast_path() -> SharedFragmentFastPath:
    """The instance in the node's HTTP stack (HealthzFirst -> fast path -> Django)."""
    fast = asgi.http_app.app
    assert isinstance(fast, SharedFragmentFastPath)
    return fast


def get(path: str, cookie: str, *, host: str = "localhost", gzip_ok: bool = False, extra_headers=()) -> dict:
    headers = [(b"host", host.encode()), (b"cookie", cookie.encode()), *extra_headers]
    if gzip_ok:
        headers.append((b"accept-encoding", b"gzip, deflate, br"))

    async def scenario() -> dict:
        communicator = HttpCommunicator(asgi.application, "GET", path, headers=headers)
        answer = await communicator.get_response(timeout=10)
        await communicator.wait(timeout=10)  # as a server does, let the application end
        return answer

    return run(scenario)


def header(answer: dict, name: str) -> str | None:
    return next((v.decode() for k, v in answer["headers"] if k.decode().lower() == name), None)


def with_seq(path: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}live_seq={live.current_sequence()}"


def answered_here(path: str, cookie: str, **options) -> tuple[dict, bool]:
    """The answer, and whether the fast path gave it (not Django)."""
    before = fast_path().answered
    answer = get(path, cookie, **options)
    return answer, fast_path().answered == before + 1


@pytest.mark.parametrize("view", [OVERVIEW, SESSIONS])
def test_a_watchers_next_fetch_is_the_answer_django_gave_without_django(view):
    cookie = session_cookie(StaffFactory())
    path = with_seq(view)

    first, first_here = answered_here(path, cookie)
    second, second_here = answered_here(path, cookie)

    assert first["status"] == second["status"] == 200
    assert (first_here, second_here) == (False, True)
    assert second["body"] == first["body"]
    volatile = {b"x-request-id", b"set-cookie"}
    assert sorted(h for h in second["headers"] if h[0].lower() not in volatile) == sorted(
        h for h in first["headers"] if h[0].lower() not in volatile
    )
    assert header(second, "x-request-id") not in (None, header(first, "x-request-id"))
    assert header(second, "content-security-policy") == header(first, "content-security-policy")


def test_a_browser_that_accepts_gzip_gets_the_same_fragment_compressed():
    cookie = session_cookie(StaffFactory())
    path = with_seq(OVERVIEW)

    plain, _ = answered_here(path, cookie)
    packed, here = answered_here(path, cookie, gzip_ok=True)

    assert here
    assert header(packed, "content-encoding") == "gzip"
    assert int(header(packed, "content-length")) == len(packed["body"])
    assert gzip.decompress(packed["body"]) == plain["body"]


def test_another_log_in_is_never_answered_from_what_this_one_was_let_see():
    path = with_seq(OVERVIEW)
    answered_here(path, session_cookie(StaffFactory()))

    answer, here = answered_here(path, session_cookie(StaffFactory()))

    assert answer["status"] == 200
    assert not here  # Django checked this log-in itself (then shared the render)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda path: path.replace("live_seq=", "no_seq="), "no number: a resync, Django decides"),
        (lambda path: path, "a host not allowed"),
    ],
)
def test_what_the_fast_path_cannot_vouch_for_goes_to_django(change, why):
    cookie = session_cookie(StaffFactory())
    path = with_seq(OVERVIEW)
    answered_here(path, cookie)

    host = "evil.example" if why == "a host not allowed" else "localhost"
    answer, here = answered_here(change(path), cookie, host=host)

    assert not here, why
    if host == "evil.example":
        assert answer["status"] == 400  # Django's DisallowedHost


def test_an_anonymous_fetch_goes_to_the_log_in_page():
    answer, here = answered_here(with_seq(OVERVIEW), f"{settings.SESSION_COOKIE_NAME}=made-up")

    assert not here
    assert answer["status"] == 302


def test_a_log_out_is_seen_at_once():
    cookie = session_cookie(StaffFactory())
    path = with_seq(OVERVIEW)
    answered_here(path, cookie)
    assert answered_here(path, cookie)[1]

    browser = Client()
    browser.cookies[settings.SESSION_COOKIE_NAME] = cookie.split("=", 1)[1]
    assert browser.post("/logout/").status_code in (200, 302)

    answer, here = answered_here(path, cookie)
    assert not here
    assert answer["status"] == 302  # to the log-in page


def test_a_role_taken_away_is_refused_at_once():
    viewer = role_user(roles.VIEWER, username="watcher")
    cookie = session_cookie(viewer)
    path = with_seq(OVERVIEW)
    answered_here(path, cookie)
    assert answered_here(path, cookie)[1]

    viewer.groups.remove(Group.objects.get(name=roles.VIEWER.group))  # as the Django admin does

    answer, here = answered_here(path, cookie)
    assert not here
    assert answer["status"] == 403


def test_an_access_change_on_another_node_is_seen_within_the_epochs_cache():
    cookie = session_cookie(StaffFactory())
    path = with_seq(OVERVIEW)
    answered_here(path, cookie)
    assert answered_here(path, cookie)[1]

    shared_redis().incr(access_epoch.KEY)  # what another node's change does

    deadline = time.monotonic() + access_epoch.CACHE_SECONDS + 2
    while answered_here(path, cookie)[1]:
        assert time.monotonic() < deadline, "still answered from what was remembered"


def test_a_change_that_bypasses_save_is_seen_within_the_viewer_seconds(monkeypatch):
    """A queryset update() sends no signal: the remembered log-in expires (the page's socket
    closes within a heartbeat, as before)."""
    monkeypatch.setattr(recent_viewers, "seconds", 0.3)
    user = StaffFactory()
    cookie = session_cookie(user)
    path = with_seq(OVERVIEW)
    answered_here(path, cookie)
    type(user).objects.filter(pk=user.pk).update(is_active=False)

    deadline = time.monotonic() + 5
    while get(path, cookie)["status"] == 200:
        assert time.monotonic() < deadline, "a deactivated user still served"


def test_without_redis_nothing_is_answered_from_memory(own_redis):
    cookie = session_cookie(StaffFactory())
    path = with_seq(OVERVIEW)
    answered_here(path, cookie)
    assert answered_here(path, cookie)[1]

    assert embedded_redis.stop(own_redis) is True

    deadline = time.monotonic() + access_epoch.CACHE_SECONDS + 2
    while answered_here(path, cookie)[1]:
        assert time.monotonic() < deadline, "still answered from memory without Redis"


def test_a_fetch_that_needs_the_render_under_way_waits_for_it_on_the_event_loop():
    key = ("/partials/test/", "", "view_desktop", "UTC")
    started, release = threading.Event(), threading.Event()

    def slow_render() -> HttpResponse:
        started.set()
        release.wait(5)
        return HttpResponse(b"fresh")

    renderer = threading.Thread(target=shared_renders.get, args=(key, None, slow_render))
    renderer.start()
    assert started.wait(5)

    async def scenario() -> tuple[bool, object]:
        waiting = asyncio.ensure_future(_render_serving(key, 0))
        for _ in range(3):  # let it run up to its wait (it registers first)
            await asyncio.sleep(0)
        still_waiting = not waiting.done()
        release.set()
        return still_waiting, await asyncio.wait_for(waiting, 5)

    still_waiting, render = run(scenario)
    renderer.join(5)

    assert still_waiting
    assert render is not None
    assert render.content == b"fresh"


def test_a_fetch_waits_on_the_loop_for_the_request_on_its_way_to_make_the_render():
    """The render a page needs is not under way yet, but another fetch of the same view is on
    its way through Django to make it: wait for that one, not for a thread of one's own."""
    key = ("/partials/test/", "", "view_desktop", "UTC")
    starters = _Starters()

    async def scenario() -> tuple[bool, object, object]:
        going = starters.start(key)
        assert going is not None
        waiting = asyncio.ensure_future(_render_serving(key, 0, starters))
        for _ in range(3):
            await asyncio.sleep(0)
        still_waiting = not waiting.done()
        # The starter's Django request renders, then ends.
        await asyncio.to_thread(shared_renders.get, key, None, lambda: HttpResponse(b"made by the starter"))
        starters.done(key, going)
        render = await asyncio.wait_for(waiting, 5)
        alone = await _render_serving(key, 10**18, starters)  # nobody on the way: go to Django
        return still_waiting, render, alone

    still_waiting, render, alone = run(scenario)

    assert still_waiting
    assert render.content == b"made by the starter"
    assert alone is None
