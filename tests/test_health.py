"""Liveness and readiness probes, as a load balancer uses them."""

from __future__ import annotations

import pytest

from collabadmin import embedded_redis

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


@pytest.fixture
def own_redis(tmp_path, settings):
    """A real Redis server of this test's own, which the test may stop."""
    socket = embedded_redis.ensure_running(tmp_path)
    settings.REDIS_URL = f"unix://{socket}"
    yield tmp_path
    embedded_redis.stop(tmp_path)


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


def test_the_home_page_is_for_staff_only(agent_client, admin_client):
    assert agent_client.get("/").status_code == 302
    assert admin_client.get("/").status_code == 200
