"""Rate limits (issue 22, point 3): counted in the real Redis, 429 with Retry-After and a
clear message on the caller form, ``POST /api/v1/sessions/``, the API and log-in; separate
counts per address, token and user name; a window that ends; one limit over two real web
nodes; requests let through when Redis is down."""

from __future__ import annotations

import logging
import urllib.error
import urllib.parse
import urllib.request

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from rest_framework.test import APIClient

from collabadmin import embedded_redis
from collabadmin.env import env_rate
from common import rate_limit
from common.redis_client import shared_redis
from tests.factories import StaffFactory, api_key
from tests.processes import free_port, run_python, start_node, stop_process, wait_for_node
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db

CALLER = {"caller_name": "Ada", "caller_contact": "", "topic": "printer", "skill_group": ""}


def assert_limited_page(response) -> None:
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert "Too many requests" in response.content.decode()
    assert f"wait {response['Retry-After']} second" in response.content.decode()


def assert_limited_json(response) -> None:
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response["Content-Type"].startswith("application/json")
    assert "throttled" in response.json()["detail"]


def token_client(user=None) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_key(user or StaffFactory())}")
    return client


# --- The caller form, per client address ---------------------------------------------------------


def test_caller_form_posts_over_the_limit_get_429_with_retry_after_and_a_page(settings):
    settings.RATE_LIMIT_CALLER = (2, 60)
    client = Client(REMOTE_ADDR="10.0.0.1")

    under = [client.post("/request/", CALLER).status_code for _ in range(2)]
    over = client.post("/request/", CALLER)

    assert 429 not in under
    assert_limited_page(over)
    assert client.get("/request/").status_code != 429  # reading the form is not counted
    assert Client(REMOTE_ADDR="10.0.0.2").post("/request/", CALLER).status_code != 429


def test_the_caller_address_comes_from_the_trusted_proxy_not_from_what_the_client_sent(settings):
    settings.RATE_LIMIT_CALLER = (1, 60)
    settings.TRUSTED_PROXY_COUNT = 1
    client = Client(REMOTE_ADDR="10.0.0.254")  # the balancer

    first = client.post("/request/", CALLER, HTTP_X_FORWARDED_FOR="1.1.1.1, 192.0.2.7")
    # A forged left-hand address does not make a new caller: the balancer saw 192.0.2.7.
    forged = client.post("/request/", CALLER, HTTP_X_FORWARDED_FOR="2.2.2.2, 192.0.2.7")
    other = client.post("/request/", CALLER, HTTP_X_FORWARDED_FOR="192.0.2.8")

    assert first.status_code != 429
    assert forged.status_code == 429
    assert other.status_code != 429


def test_a_limit_turned_off_counts_nothing(settings):
    settings.RATE_LIMIT_CALLER = None
    client = Client()

    assert all(client.post("/request/", CALLER).status_code != 429 for _ in range(25))
    assert not list(shared_redis().scan_iter(match=f"{rate_limit.KEY_PREFIX}caller:*"))


def test_the_window_ends_and_the_key_expires_with_it(settings):
    settings.RATE_LIMIT_CALLER = (1, 1)
    client = Client(REMOTE_ADDR="10.0.0.3")
    assert client.post("/request/", CALLER).status_code != 429
    assert client.post("/request/", CALLER).status_code == 429
    key = rate_limit.rate_key("caller", "10.0.0.3")
    assert 0 < shared_redis().pttl(key) <= 1000

    wait_until(lambda: shared_redis().pttl(key) == -2, timeout=5, message="the one-second window's key expired")
    assert client.post("/request/", CALLER).status_code != 429


# --- POST /api/v1/sessions/, per client address ---------------------------------------------------


def test_session_requests_over_the_limit_per_address_get_a_json_429(settings):
    settings.RATE_LIMIT_SESSION_REQUESTS = (2, 60)
    # Two tokens from one address: the count is the address's.
    first, second = token_client(), token_client()

    under = [first.post("/api/v1/sessions/", {}, format="json", REMOTE_ADDR="10.0.1.1").status_code for _ in range(2)]
    over = second.post("/api/v1/sessions/", {}, format="json", REMOTE_ADDR="10.0.1.1")
    elsewhere = second.post("/api/v1/sessions/", {}, format="json", REMOTE_ADDR="10.0.1.2")

    assert under == [400, 400]  # an empty body: counted, then refused as invalid
    assert_limited_json(over)
    assert elsewhere.status_code == 400
    # Reading the sessions is not a caller's request.
    assert second.get("/api/v1/sessions/", REMOTE_ADDR="10.0.1.1").status_code == 200


def _script_calls() -> int:
    """How many Lua script calls the shared Redis has run (its own command statistics)."""
    stats = shared_redis().info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("eval", "evalsha"))


def test_a_callers_request_counts_its_token_and_its_address_in_one_round_trip(settings):
    settings.RATE_LIMIT_API = (3, 60)
    settings.RATE_LIMIT_SESSION_REQUESTS = (100, 60)
    client = token_client()

    before = _script_calls()
    post = lambda: client.post("/api/v1/sessions/", {}, format="json", REMOTE_ADDR="10.0.1.9")  # noqa: E731
    statuses = [post().status_code for _ in range(4)]

    # One script call per request, and both counts moved: the token's limit (3) refused the 4th.
    assert _script_calls() - before == 4
    assert statuses[:3] == [400, 400, 400]
    assert statuses[3] == 429
    assert shared_redis().get(rate_limit.rate_key("session-requests", "10.0.1.9")) == b"4"


# --- The API, per token -------------------------------------------------------------------------


def test_api_requests_over_the_limit_per_token_get_a_json_429(settings):
    settings.RATE_LIMIT_API = (3, 60)
    busy, quiet = token_client(), token_client()

    under = [busy.get("/api/v1/sessions/").status_code for _ in range(3)]
    over = busy.get("/api/v1/agents/")

    assert under == [200, 200, 200]
    assert_limited_json(over)
    assert quiet.get("/api/v1/sessions/").status_code == 200
    # Anonymous requests are refused for what they are, not counted against anyone.
    assert all(APIClient().get("/api/v1/sessions/").status_code in (401, 403) for _ in range(5))


# --- Log-in, per user name ----------------------------------------------------------------------


@pytest.mark.parametrize("form", ["/login/", "/agent/login/", "/admin/login/"])
def test_log_in_posts_over_the_limit_per_user_name_get_429_on_every_form(settings, form):
    settings.RATE_LIMIT_LOGIN = (2, 60)
    # From different addresses each time: a rate per name, whoever tries (the lockout,
    # by name and address, never triggers here).
    attempts = [
        Client(REMOTE_ADDR=f"10.0.2.{n}").post(form, {"username": name, "password": "wrong"})
        for n, name in enumerate(["alice", "Alice"])
    ]
    over = Client(REMOTE_ADDR="10.0.2.9").post(form, {"username": "ALICE", "password": "wrong"})
    other_name = Client(REMOTE_ADDR="10.0.2.9").post(form, {"username": "bob", "password": "wrong"})

    assert [response.status_code for response in attempts] == [200, 200]
    assert_limited_page(over)
    assert other_name.status_code == 200


def test_the_log_in_count_is_shared_by_every_log_in_form(settings):
    settings.RATE_LIMIT_LOGIN = (2, 60)
    client = Client()
    client.post("/login/", {"username": "carol", "password": "wrong"})
    client.post("/agent/login/", {"username": "carol", "password": "wrong"})

    assert client.post("/admin/login/", {"username": "carol", "password": "wrong"}).status_code == 429


# --- Configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [("20/60", (20, 60)), (" 5/1 ", (5, 1)), ("0", None), ("", None)])
def test_a_rate_is_n_per_s_seconds_and_0_or_empty_turns_it_off(monkeypatch, raw, expected):
    monkeypatch.setenv("RATE_LIMIT_CALLER", raw)
    assert env_rate("RATE_LIMIT_CALLER", "1/1") == expected


@pytest.mark.parametrize("raw", ["20", "20/", "x/60", "20/0", "-1/60", "20/60/2", "1.5/60"])
def test_a_malformed_rate_is_refused_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv("RATE_LIMIT_API", raw)
    with pytest.raises(ImproperlyConfigured, match="RATE_LIMIT_API"):
        env_rate("RATE_LIMIT_API", "1/1")


def test_a_malformed_rate_stops_start_up():
    result = run_python("print('started')", RATE_LIMIT_LOGIN="ten per minute")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "RATE_LIMIT_LOGIN='ten per minute'" in result.stderr


# --- Redis down: fail open ----------------------------------------------------------------------


def test_with_redis_down_requests_go_through_and_a_warning_is_logged(settings, own_redis, caplog):
    settings.RATE_LIMIT_CALLER = (1, 60)
    client = Client(REMOTE_ADDR="10.0.3.1")
    assert client.post("/request/", CALLER).status_code != 429
    assert client.post("/request/", CALLER).status_code == 429  # counted in this test's Redis

    assert embedded_redis.stop(own_redis) is True
    with caplog.at_level(logging.WARNING, logger="common.rate_limit"):
        statuses = [client.post("/request/", CALLER).status_code for _ in range(3)]

    assert 429 not in statuses
    assert "Redis unavailable: the request goes through" in caplog.text


# --- Two real web nodes -------------------------------------------------------------------------


def _get(url: str, token: str) -> tuple[int, str | None]:
    return _send(urllib.request.Request(url, headers={"Authorization": f"Token {token}"}))  # noqa: S310 (our own node)


def _log_in(url: str, name: str) -> tuple[int, str | None]:
    body = urllib.parse.urlencode({"username": name, "password": "wrong"}).encode()
    return _send(urllib.request.Request(f"{url}/login/", data=body, method="POST"))  # noqa: S310 (our own node)


def _send(request: urllib.request.Request) -> tuple[int, str | None]:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, None
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Retry-After")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_limit_holds_across_two_real_web_nodes(tmp_path):
    limit = 6
    token = api_key(StaffFactory())
    nodes, urls = [], []
    try:
        for name in ("node-a", "node-b"):
            port = free_port()
            log = tmp_path / f"{name}.log"
            process = start_node(
                "routing-a",
                port,
                log,
                COLLABADMIN_RUN_MONITOR="0",
                RATE_LIMIT_API=f"{limit}/60",
                RATE_LIMIT_LOGIN=f"{limit}/60",
            )
            nodes.append(process)
            urls.append(f"http://127.0.0.1:{port}")
            wait_for_node(urls[-1], process, log)

        answers = [_get(f"{urls[n % 2]}/api/v1/sessions/", token) for n in range(limit + 1)]
        # Log-in through the nodes' async middleware chain: counted before the CSRF check
        # (no token here: 403), so the (N+1)th post over both nodes is the 429.
        log_ins = [_log_in(urls[n % 2], "dora") for n in range(limit + 1)]
    finally:
        for process in nodes:
            stop_process(process)

    assert [status for status, _ in answers[:limit]] == [200] * limit  # three on each node
    status, retry_after = answers[limit]
    assert status == 429
    assert retry_after is not None
    assert 1 <= int(retry_after) <= 60
    assert [status for status, _ in log_ins[:limit]] == [403] * limit
    assert log_ins[limit][0] == 429
    assert log_ins[limit][1] is not None


def test_the_schema_documents_429_with_retry_after_on_every_operation(admin_client):
    """A client generated from the schema must expect the rate limit's answer anywhere."""
    paths = admin_client.get("/api/v1/schema/", {"format": "json"}).json()["paths"]
    operations = [
        (path, method, operation)
        for path, item in paths.items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    assert len(operations) > 20
    missing = [f"{method.upper()} {path}" for path, method, op in operations if "429" not in op["responses"]]
    assert missing == []
    assert "Retry-After" in paths["/api/v1/sessions/"]["post"]["responses"]["429"]["description"]
