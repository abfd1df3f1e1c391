"""Persona fixtures shared by every test: administrator, agent, other agent, anonymous."""

from __future__ import annotations

import contextlib
import os

import pytest
import redis
from celery._state import _set_task_join_will_block
from django.test import Client
from rest_framework.test import APIClient

from collabadmin import embedded_redis
from common import live, rate_limit
from common.redis_client import shared_redis
from console.live_fragments import shared_renders
from failover.choices import Health, PeerKind, PeerPriority
from failover.models import Link
from sessions.services import drain
from tests.factories import AgentFactory, PeerFactory, ServerFactory, StaffFactory
from tests.pairs import set_health


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # PBKDF2's deliberate slowness costs a third of a second per user in every test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def isolated_process_state():
    """Process-wide state one test must not leave to the next."""
    # Celery's "a join would block" flag is one global, set and restored around every eager
    # apply_async: two threads running eager tasks at once (a test's monitor thread and the
    # test itself) can restore it in the wrong order and leave it set, and every later
    # ``result.get()`` in this process then refuses to run.
    _set_task_join_will_block(False)
    # Drain marks and locks live in Redis keyed by server id, for seconds: the next test's
    # server may get the same id, and a "drain on its way" mark it did not set would keep
    # its first caller's drain from being sent.
    with contextlib.suppress(redis.RedisError):
        client = shared_redis()
        for key in client.scan_iter(match=f"{drain.KEY_PREFIX}*"):
            client.delete(key)
        # Rate-limit counters: the test client is always 127.0.0.1, and one test's requests
        # must not count against the next test's limit.
        for key in client.scan_iter(match=f"{rate_limit.KEY_PREFIX}*"):
            client.delete(key)
    # Shared fragment renders are keyed by the live sequence number, not by the database:
    # the previous test's render must not serve this test's (other) rows.
    shared_renders.clear()
    yield
    # Broadcasts leave through the process's sender after the commit: let this test's go
    # before the next test subscribes to the same groups.
    live.flush()


@pytest.fixture
def server(db):
    return ServerFactory(name="routing-a")


@pytest.fixture
def mb_pair(server):
    """A Media Blender pair, both peers up, the primary connected (as after start-up)."""
    primary = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.PRIMARY, name="mb-1")
    secondary = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.SECONDARY, name="mb-2")
    set_health(primary, Health.UP)
    set_health(secondary, Health.UP)
    return Link.objects.get(server=server, kind=PeerKind.MEDIA_BLENDER), primary, secondary


@pytest.fixture
def admin_user(db):
    return StaffFactory(username="admin")


@pytest.fixture
def agent(server):
    return AgentFactory(user__username="agent", server=server)


@pytest.fixture
def other_agent(server):
    return AgentFactory(user__username="other-agent", server=server)


@pytest.fixture
def anonymous_client() -> Client:
    return Client()


@pytest.fixture
def admin_client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def agent_client(agent) -> Client:
    client = Client()
    client.force_login(agent.user)
    return client


@pytest.fixture
def admin_api(admin_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


@pytest.fixture
def agent_api(agent) -> APIClient:
    client = APIClient()
    client.force_authenticate(agent.user)
    return client


@pytest.fixture
def anonymous_api() -> APIClient:
    return APIClient()


CHROMIUM = "/usr/bin/chromium"


def pytest_collection_modifyitems(config, items):
    """Browser tests need Debian's Chromium. Without it they are skipped with a clear
    message, except in CI (COLLABADMIN_REQUIRE_BROWSER=1), where that is a failure."""
    if os.path.exists(CHROMIUM):
        return
    browser_tests = [item for item in items if item.get_closest_marker("browser")]
    if not browser_tests:
        return
    if os.environ.get("COLLABADMIN_REQUIRE_BROWSER") == "1":
        raise pytest.UsageError(
            f"{CHROMIUM} is missing and COLLABADMIN_REQUIRE_BROWSER=1: install it (apt-get install -y chromium)."
        )
    skip = pytest.mark.skip(reason=f"browser test skipped: {CHROMIUM} not found (apt-get install -y chromium)")
    for item in browser_tests:
        item.add_marker(skip)


@pytest.fixture
def own_redis(tmp_path, settings):
    """A real Redis server of this test's own, which the test may stop."""
    socket = embedded_redis.ensure_running(tmp_path)
    settings.REDIS_URL = f"unix://{socket}"
    yield tmp_path
    embedded_redis.stop(tmp_path)
