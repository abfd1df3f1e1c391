"""/readyz and /metrics watch the notifier's queue too: a stopped notifier leaves every
alert's notification unsent while the rest of the product works, so its backlog must be
as visible as the worker's."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import pytest

from collabadmin.celery import app
from common.redis_client import shared_redis

pytestmark = pytest.mark.django_db


@pytest.fixture
def queues(settings) -> Iterator[tuple[str, str]]:
    """A default queue and a notification queue of this test's own, both empty, with
    nobody consuming them."""
    default, notify = f"test-default-{uuid.uuid4().hex[:8]}", f"test-notify-{uuid.uuid4().hex[:8]}"
    settings.CELERY_TASK_DEFAULT_QUEUE, settings.NOTIFY_QUEUE = default, notify
    yield default, notify
    shared_redis().delete(default, notify)


def send_to(queue: str, *, sent_seconds_ago: float) -> None:
    """A real message on the broker, sent (by its stamp) that long ago and not yet taken."""
    app.send_task(
        "failover.notification_send",
        args=[0],
        queue=queue,
        headers={"collabadmin_sent_at": time.time() - sent_seconds_ago},
    )


def test_a_notification_waiting_with_no_notifier_is_reported_by_readyz_and_metrics(queues, client, admin_client):
    default, notify = queues
    send_to(notify, sent_seconds_ago=45)

    ready = client.get("/readyz").json()
    assert ready["status"] == "ok", "a stopped notifier does not take the node out of the balancer"
    by_queue = {state["queue"]: state for state in ready["queues"]}
    assert by_queue[notify]["stalled"] is True
    assert by_queue[notify]["waiting"] == 1
    assert by_queue[default]["stalled"] is False
    assert ready["tasks"]["queue"] == default, "tasks stays the worker's queue, as before"
    [warning] = ready["warnings"]
    assert "notifier" in warning
    assert notify in warning

    metrics = admin_client.get("/metrics").content.decode()
    age = re.search(rf'collabadmin_task_queue_oldest_wait_seconds{{queue="{notify}"}} (\S+)', metrics)
    assert age, metrics[-2000:]
    assert float(age.group(1)) >= 45
    assert f'collabadmin_task_queue_waiting{{queue="{default}"}} 0.0' in metrics


def test_without_a_queue_of_their_own_only_the_default_queue_is_watched(queues, settings, client):
    default, _ = queues
    settings.NOTIFY_QUEUE = ""
    assert [state["queue"] for state in client.get("/readyz").json()["queues"]] == [default]
