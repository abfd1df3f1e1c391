"""Liveness and readiness probes, as a load balancer uses them."""

from __future__ import annotations

import socket
import time

import pytest

from collabadmin import embedded_redis
from tests.processes import free_port, http_status, start_node, stop_process, wait_for_node

pytestmark = pytest.mark.django_db


def test_healthz_answers_ok_without_a_log_in(anonymous_client):
    response = anonymous_client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_readyz_is_ready_when_the_database_and_redis_answer(anonymous_client):
    response = anonymous_client.get("/readyz")

    body = response.json()
    assert response.status_code == 200
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["redis"]["ok"] is True


def test_readyz_turns_unavailable_when_redis_is_stopped_and_recovers_when_it_is_back(anonymous_client, own_redis):
    assert anonymous_client.get("/readyz").status_code == 200

    assert embedded_redis.stop(own_redis) is True
    stopped = anonymous_client.get("/readyz")

    assert stopped.status_code == 503
    assert stopped.json()["status"] == "unavailable"
    assert stopped.json()["checks"]["redis"]["ok"] is False
    assert stopped.json()["checks"]["redis"]["error"]
    assert stopped.json()["checks"]["database"]["ok"] is True

    embedded_redis.ensure_running(own_redis)
    assert anonymous_client.get("/readyz").status_code == 200


def test_probes_refuse_anything_but_get(anonymous_client):
    assert anonymous_client.post("/healthz").status_code == 405
    assert anonymous_client.post("/readyz").status_code == 405


def test_the_home_page_sends_an_anonymous_visitor_to_the_log_in_page(anonymous_client):
    response = anonymous_client.get("/")

    assert response.status_code == 302
    assert response.url.startswith("/login/")


def test_the_home_page_is_for_role_holders_only(agent_client, admin_client):
    assert agent_client.get("/").status_code == 403
    assert admin_client.get("/").status_code == 200


@pytest.fixture
def one_thread_node(tmp_path, transactional_db):
    """A real node (uvicorn + the project's ASGI app) with a single HTTP thread."""
    port = free_port()
    log = tmp_path / "node.log"
    process = start_node("routing-a", port, log, HTTP_THREADS="1", COLLABADMIN_RUN_MONITOR="0")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_node(url, process, log)
        yield url, port
    finally:
        stop_process(process)


def hold_an_http_thread(port: int) -> socket.socket:
    """A real slow client: a POST whose body never comes. With a CSRF cookie, Django's CSRF
    check reads the form for the token, and the thread that runs it waits for the body for
    as long as the client keeps the connection open."""
    client = socket.create_connection(("127.0.0.1", port))
    client.sendall(
        b"POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: csrftoken=" + b"a" * 32 + b"\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\nusername="
    )
    return client


@pytest.mark.slow
def test_healthz_answers_at_once_while_every_http_thread_is_busy(one_thread_node):
    url, port = one_thread_node
    held = hold_an_http_thread(port)
    try:
        # The thread is really held: any request through Django now waits behind it.
        assert http_status(f"{url}/readyz", timeout=1.5) is None
        started = time.perf_counter()
        status = http_status(f"{url}/healthz", timeout=1.5)
        took = time.perf_counter() - started
    finally:
        held.close()
    assert status == 200, "/healthz queued behind the node's HTTP work"
    assert took < 1.0
    # The held request went through once its client left; the node serves Django again.
    assert http_status(f"{url}/readyz", timeout=10) == 200


@pytest.mark.slow
def test_healthz_on_the_loop_refuses_a_foreign_host_as_django_does(one_thread_node):
    url, port = one_thread_node
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: evil.example.com\r\nConnection: close\r\n\r\n")
        assert client.recv(64).split()[1] == b"400"
