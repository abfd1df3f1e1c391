"""Redis behind Sentinel: a master that dies is replaced, and the product follows (issue 16,
point 4).

Real processes throughout (tests/redis_sentinel.py): Debian's ``redis-server`` as a master
and a replica, three ``redis-sentinel`` processes, on free loopback ports. The master is
SIGKILLed; the sentinels promote the replica.

- The product's own Redis client (the live sequence and run id, drain locks, ``/readyz``)
  asks the sentinels and follows the new master; the run id that desktops watch changes,
  and the sequence keeps increasing.
- The whole product (web node, monitor, worker, beat, Media Blender simulators) on Sentinel,
  with a desktop open in Chromium and callers asking: the master is killed in the middle of
  a storm of switchovers. Once the replica is promoted the product works again (figures
  printed), the desktop is back in sync without a reload, and no session is lost or
  duplicated (the fault suite's invariants).
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from django.db import transaction
from kombu import Connection

from collabadmin.celery import app as celery_app
from collabadmin.worker_watchdog import read_status
from common import live
from common.redis_client import shared_redis
from sessions.models import CollaborationSession
from sessions.tasks import end_hung_up_after_grace
from tests import redis_sentinel
from tests.console.test_overview_browser import CHROMIUM
from tests.factories import PASSWORD, StaffFactory
from tests.faults.invariants import all_checks, pair_healthy
from tests.faults.stack import SentinelRedis, worker_status_file
from tests.faults.test_fault_injection import Api, Driver, installed, logs, state_of
from tests.peering.conftest import start_peer  # noqa: F401  (fixture)
from tests.processes import ROOT, child_database_url, project_env, redis_env
from tests.redis_sentinel import SentinelCluster, use_sentinel
from tests.test_stuck_worker import ended, hung_up_session
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not redis_sentinel.available(), reason="needs Debian's redis-server and redis-sentinel"),
]


@pytest.fixture
def sentinel_cluster(tmp_path_factory) -> Iterator[SentinelCluster]:
    """A master, a replica and three sentinels of this test's own."""
    cluster = SentinelCluster(tmp_path_factory.mktemp("sentinel"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def on_sentinel(sentinel_cluster, settings) -> SentinelCluster:
    """This process (and the children it starts, tests/processes.redis_env) on the cluster."""
    use_sentinel(settings, sentinel_cluster.config)
    return sentinel_cluster


def wait_for(condition, *, timeout: float, what: str):
    return wait_until(condition, timeout=timeout, message=what)


@pytest.mark.django_db
def test_the_product_s_redis_client_follows_the_master_sentinel_promotes(on_sentinel, anonymous_client):
    cluster = on_sentinel
    live._run_id_cache = (0.0, None)
    before = live.reserve_sequence()
    run_id = live.redis_run_id()
    assert run_id is not None
    assert anonymous_client.get("/readyz").status_code == 200
    # The sequence reached the replica before the master dies (replication is asynchronous).
    wait_for(lambda: int(shared_redis().execute_command("WAIT", 1, 1000)) == 1, timeout=10, what="the replica in step")

    old = cluster.kill_master()
    killed_at = time.monotonic()
    cluster.wait_promoted(old)
    promoted_at = time.monotonic()

    def working_again() -> int | None:
        try:
            return live.reserve_sequence()
        except redis.RedisError:  # the old master's connection failing, until the client follows
            return None

    after = wait_for(working_again, timeout=10, what="the live sequence served by the new master")
    working_at = time.monotonic()
    live._run_id_cache = (0.0, None)

    assert after > before, "the sequence went backwards across the failover"
    assert live.redis_run_id() not in (None, run_id), "desktops would not notice the failover"
    ready = anonymous_client.get("/readyz")
    assert ready.status_code == 200, ready.json()
    assert shared_redis().connection_pool.get_master_address() == cluster.master_address()
    print(
        f"sentinel: promoted {promoted_at - killed_at:.2f} s after the master was killed; "
        f"the product's client worked {working_at - promoted_at:.2f} s after the promotion"
    )


# --- The whole product on Sentinel, the master killed in a switchover storm --------------------

STORM_EVERY_S = 0.5  # a manual switchover through the API, back and forth
KILL_AFTER_S = 4.0
STORM_AFTER_PROMOTION_S = 12.0
BACK_WITHIN_S = 30.0  # a session routed after the promotion, once the storm is over
BACK_IN_SYNC_MS = 10_000  # the desktops' promise after a Redis restart


@dataclass
class Storm:
    """Switchovers of the Media Blender pair through the API, one every ``STORM_EVERY_S``,
    on a thread of their own, until stopped."""

    api: Api
    link_id: int
    statuses: list[int] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(STORM_EVERY_S):
            status, _ = self.api.post(f"/api/v1/links/{self.link_id}/switchover/", {"reason": "storm"})
            self.statuses.append(status)


def operator_logged_in(browser, base: str, settings):
    """An administrator's overview, live (a PBKDF2 password: the node does not know the
    tests' fast hasher)."""
    from playwright.sync_api import expect

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    staff = StaffFactory(username="operator")
    staff.set_password(PASSWORD)
    staff.save(update_fields=["password"])
    page = browser.new_page()
    page.goto(f"{base}/")
    page.get_by_label("Username").fill("operator")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("[data-live-status]")).to_have_attribute("data-state", "live", timeout=20_000)
    # Every change of the live indicator, with the browser's clock (the machine's clock).
    page.evaluate(
        """() => {
        const el = document.querySelector("[data-live-status]");
        window.__liveStates = [];
        window.__sameDocument = true;
        new MutationObserver(() => window.__liveStates.push([el.dataset.state, Date.now() / 1000]))
            .observe(el, {attributes: true, attributeFilter: ["data-state"]});
    }"""
    )
    return page


@dataclass
class Receipts:
    """When the worker received messages, read from the status file it rewrites every
    second (collabadmin/worker_watchdog.py: the time of its last receipt), on a thread of
    its own. Within a second: two receipts in one second show as the later one."""

    status_file: Path
    seen: set[float] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(0.1):
            status = read_status(self.status_file) or {}
            if status.get("idle_seconds") is not None:
                self.seen.add(round(float(status["updated_at"]) - float(status["idle_seconds"]), 1))

    def first_after(self, moment: float) -> float | None:
        return min((at for at in self.seen if at > moment), default=None)


def first_routing_after(moment: float) -> float | None:
    """When the first session was routed after ``moment`` (wall clock), if any."""
    routed = (
        CollaborationSession.objects.filter(routed_at__gt=datetime.fromtimestamp(moment, tz=UTC))
        .order_by("routed_at")
        .values_list("routed_at", flat=True)
        .first()
    )
    return routed.timestamp() if routed else None


def kill_the_master_in_a_storm(
    cluster: SentinelCluster, driver: Driver, storm: Storm, receipts: Receipts, rng: random.Random
) -> tuple[float, float]:
    """Callers ask and administrators end sessions while the storm switches the pair over;
    ``KILL_AFTER_S`` in, the master is SIGKILLed; all of it goes on until
    ``STORM_AFTER_PROMOTION_S`` after the sentinels promote the replica. Returns when the
    master was killed and when the replica was promoted (wall clock)."""
    threading.Thread(target=storm.run, name="switchover-storm", daemon=True).start()
    threading.Thread(target=receipts.run, name="worker-receipts", daemon=True).start()
    started = time.monotonic()
    killed_at = promoted_at = None
    try:
        while promoted_at is None or time.time() - promoted_at < STORM_AFTER_PROMOTION_S:
            driver.step()
            if killed_at is None and time.monotonic() - started >= KILL_AFTER_S:
                old_master = cluster.kill_master()
                killed_at = time.time()
            elif killed_at is not None and promoted_at is None and cluster.master_address() != old_master.address:
                promoted_at = time.time()
            assert time.monotonic() - started < 120, "Sentinel never promoted the replica"
            time.sleep(rng.uniform(0.05, 0.2))  # the pace of callers, not a wait for a result
    finally:
        storm.stop.set()
        receipts.stop.set()
    return killed_at, promoted_at


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_product_carries_on_when_the_redis_master_dies_in_a_switchover_storm(
    on_sentinel,
    start_peer,  # noqa: F811
    tmp_path,
    monkeypatch,
    settings,
):
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # the ORM beside Playwright's loop
    cluster = on_sentinel
    rng = random.Random(16)
    with (
        installed(SentinelRedis(cluster), launch_peer=start_peer, tmp_path=tmp_path) as (stack, link, api),
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = operator_logged_in(browser, api.base, settings)
        driver = Driver(rng, api)
        storm = Storm(api, link.pk)
        receipts = Receipts(worker_status_file(tmp_path / "worker.log"))
        killed_at, promoted_at = kill_the_master_in_a_storm(cluster, driver, storm, receipts, rng)
        stack.heal()  # the old master back, as a replica of the new one

        # The worker's own record of the first message it took after the promotion (the
        # storm keeps sending it work: it takes some as soon as it can).
        worker_back = receipts.first_after(promoted_at)
        assert worker_back is not None, "the worker took no work from the promoted replica during the storm"
        routing_back = wait_until(
            lambda: first_routing_after(promoted_at),
            timeout=BACK_WITHIN_S,
            message="a session routed after the promotion (drains sent through the new master)",
            diagnostics=lambda: state_of(link) + "\n" + logs(tmp_path)[-6000:],
        )
        states = page.evaluate("window.__liveStates")
        resynced = [at for state, at in states if state == "live" and at > promoted_at]
        assert "reconnecting" in [state for state, _ in states], f"the desktop never resynced: {states}"
        assert resynced, f"the desktop did not come back live after the promotion: {states}"

        # After the storm, one more switchover: the open page shows it live, without a reload.
        status, _ = api.post(f"/api/v1/links/{link.pk}/switchover/", {"reason": "after the storm"})
        assert status == 200
        link.refresh_from_db()
        connected = link.peers().get(connection="connected")
        expect(page.locator(f"#peer-{connected.pk}")).to_have_attribute(
            "data-display-state", "connected", timeout=BACK_IN_SYNC_MS
        )
        assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
        browser.close()

        wait_until(lambda: pair_healthy(link), timeout=30, message="the pair back to one connected peer")
        problems = all_checks(driver.promised, {f"caller-{n}" for n in range(1, driver.asked + 1)})
        assert not problems, "\n".join(problems)
        assert driver.promised
        assert 200 in storm.statuses

    print(
        f"sentinel in a switchover storm: replica promoted {promoted_at - killed_at:.2f} s after the master was "
        f"killed; after the promotion the worker took work again in {worker_back - promoted_at:.2f} s, the desktop "
        f"was live again in {resynced[0] - promoted_at:.2f} s and a session was routed in "
        f"{routing_back - promoted_at:.2f} s (the storm goes on {STORM_AFTER_PROMOTION_S:.0f} s, its "
        f"switchovers refuse routes asked under an epoch they replaced); {len(storm.statuses)} switchovers, "
        f"{driver.asked} callers asked, {len(driver.promised)} accepted, {driver.unanswered} unanswered"
    )


# --- A worker holding a task when the master dies ----------------------------------------------


def send_to_cluster(cluster: SentinelCluster, task, *, queue: str) -> None:
    """Publish ``task`` through the cluster's current master (this process's Celery app was
    configured for the test run's own Redis)."""
    config = cluster.config
    with (
        Connection(config.kombu_url(), transport_options=config.kombu_transport_options()) as connection,
        celery_app.amqp.Producer(connection) as producer,
    ):
        task.apply_async(queue=queue, expires=300, producer=producer)


@pytest.mark.django_db(transaction=True)
def test_a_worker_holding_a_task_when_the_master_dies_carries_on_with_the_promoted_replica(on_sentinel, tmp_path):
    cluster = on_sentinel
    queue = f"test-sentinel-{uuid.uuid4().hex[:8]}"
    held = hung_up_session("routing-a")
    log = tmp_path / "worker.log"
    env = project_env(DATABASE_URL=child_database_url(), CELERY_QUEUE=queue, **redis_env())
    env["COLLABADMIN_WORKER_STATUS_FILE"] = str(tmp_path / "worker.json")
    argv = [sys.executable, "-m", "celery", "-A", "collabadmin", "worker", "-Q", queue, "--pool", "threads"]
    argv += ["--concurrency", "4", "--loglevel", "INFO", "--without-heartbeat", "--without-mingle", "--without-gossip"]
    with open(log, "ab") as out:
        worker = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        with transaction.atomic():
            CollaborationSession.objects.select_for_update().get(pk=held.pk)  # the task waits for this
            send_to_cluster(cluster, end_hung_up_after_grace, queue=queue)
            wait_until(
                lambda: (read_status(tmp_path / "worker.json") or {}).get("reserved") == 1,
                timeout=60,
                message="the worker took the task and holds it",
                diagnostics=lambda: log.read_text()[-3000:],
            )
            cluster.wait_promoted(cluster.kill_master())
        # The held task finishes; its acknowledgement went with the old master.
        wait_until(lambda: ended(held), timeout=30, message="the held task finished")

        later = hung_up_session("routing-b")
        send_to_cluster(cluster, end_hung_up_after_grace, queue=queue)  # through the new master
        wait_until(
            lambda: ended(later),
            timeout=30,
            message="the same worker took work from the promoted replica",
            diagnostics=lambda: log.read_text()[-6000:],
        )
        assert worker.poll() is None, log.read_text()[-6000:]
        assert "Unrecoverable error" not in log.read_text()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
