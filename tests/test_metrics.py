"""/metrics: Prometheus text computed from the database, as a scraper reads it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from collabadmin import metrics
from failover.choices import AlertKind, FailoverKind, Health, LinkState, PeerKind, PeerPriority
from failover.models import Link, Peer, Server
from failover.monitor.monitor import LEASE_NAME
from failover.services.health import ProbeFigures, peers_record_probes
from failover.services.lease import lease_acquire, lease_release, lease_renew
from sessions.choices import AgentState, EndReason, SessionState
from sessions.models import Agent
from tests.factories import (
    AgentFactory,
    AlertFactory,
    PeerFactory,
    ServerFactory,
    SessionFactory,
    StaffFactory,
    UserFactory,
)
from tests.pairs import set_health

pytestmark = pytest.mark.django_db

REMOTE = "203.0.113.7"  # TEST-NET-3: never in the default allow-list


def scrape(client: Client | None = None, **extra) -> dict:
    response = (client or Client()).get("/metrics", **extra)
    assert response.status_code == 200, response.content
    return {family.name: family for family in text_string_to_metric_families(response.content.decode())}


def sample(families: dict, family: str, sample_name: str | None = None, **labels: str) -> float:
    matches = [
        s.value
        for s in families[family].samples
        if s.name == (sample_name or family) and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matches) == 1, f"{sample_name or family}{labels}: {len(matches)} samples"
    return matches[0]


def label_sets(families: dict, family: str) -> list[dict]:
    return [s.labels for s in families[family].samples]


def fail_over(primary) -> None:
    """The primary fails: it began failing 0.4 s before it was declared down, 1.2 s ago."""
    declared = timezone.now() - timedelta(seconds=1.2)
    result = set_health(primary, Health.DOWN, at=declared, failed_at=declared - timedelta(seconds=0.4))
    assert result.outcome == "switched"


# --- Values ------------------------------------------------------------------------------


def test_a_real_switchover_moves_link_state_epoch_and_failover_counter(server, mb_pair):
    _, primary, _ = mb_pair
    before = scrape()
    fail_over(primary)

    after = scrape()

    link = Link.objects.get(server=server, kind=PeerKind.MEDIA_BLENDER)
    assert link.epoch == 2
    assert sample(before, "collabadmin_link_epoch", server="routing-a", kind="media_blender") == 1
    assert sample(after, "collabadmin_link_epoch", server="routing-a", kind="media_blender") == 2
    for state in LinkState.values:
        expected = 1 if state == LinkState.CONNECTED else 0
        assert (
            sample(after, "collabadmin_link_state", server="routing-a", kind="media_blender", state=state) == expected
        )
    # The Admin Workstation link has no peers: down.
    assert sample(after, "collabadmin_link_state", server="routing-a", kind="admin_workstation", state="down") == 1
    counter = "collabadmin_failovers_total"
    assert sample(before, "collabadmin_failovers", counter, server="routing-a", kind="automatic") == 0
    assert sample(after, "collabadmin_failovers", counter, server="routing-a", kind="automatic") == 1
    assert sample(after, "collabadmin_failovers", counter, server="routing-a", kind="link_restored") == 1
    assert after["collabadmin_failovers"].type == "counter"
    assert {s.labels["kind"] for s in after["collabadmin_failovers"].samples} == set(FailoverKind.values)


def test_a_real_switchover_lands_in_the_detection_and_switchover_histogram_buckets(mb_pair):
    _, primary, _ = mb_pair
    fail_over(primary)

    families = scrape()

    detection = "collabadmin_failover_detection_seconds"
    assert families[detection].type == "histogram"
    # Only the automatic switchover has a failure start: 0.4 s, so in le=0.5 and not in le=0.25.
    assert sample(families, detection, f"{detection}_count") == 1
    assert sample(families, detection, f"{detection}_bucket", le="0.25") == 0
    assert sample(families, detection, f"{detection}_bucket", le="0.5") == 1
    assert sample(families, detection, f"{detection}_bucket", le="+Inf") == 1
    assert sample(families, detection, f"{detection}_sum") == pytest.approx(0.4, abs=0.001)

    switchover = "collabadmin_failover_switchover_seconds"
    # The restore at start-up committed at once (le=0.05); the switchover 1.2 s after detection.
    assert sample(families, switchover, f"{switchover}_count") == 2
    assert sample(families, switchover, f"{switchover}_bucket", le="0.05") == 1
    assert sample(families, switchover, f"{switchover}_bucket", le="1.0") == 1
    assert sample(families, switchover, f"{switchover}_bucket", le="1.5") == 2
    assert sample(families, switchover, f"{switchover}_bucket", le="+Inf") == 2
    assert 1.2 <= sample(families, switchover, f"{switchover}_sum") < 1.5
    bounds = [s.labels["le"] for s in families[switchover].samples if s.name.endswith("_bucket")]
    assert bounds == ["0.05", "0.1", "0.25", "0.5", "0.75", "1.0", "1.5", "2.0", "3.0", "5.0", "10.0", "+Inf"]


def test_peer_gauges_follow_health_connection_maintenance_and_probe_figures(server, mb_pair):
    _, primary, secondary = mb_pair
    peers_record_probes(
        [
            ProbeFigures(
                peer_id=primary.pk, at=timezone.now(), latency_ms=12.5, consecutive_successes=0, consecutive_failures=3
            )
        ]
    )
    fail_over(primary)
    Peer.objects.filter(pk=primary.pk).update(in_maintenance=True)

    families = scrape()

    old = {"server": "routing-a", "peer": "mb-1", "kind": "media_blender"}
    new = {"server": "routing-a", "peer": "mb-2", "kind": "media_blender"}
    assert sample(families, "collabadmin_peer_up", **old) == 0
    assert sample(families, "collabadmin_peer_up", **new) == 1
    assert sample(families, "collabadmin_peer_connected", **old) == 0
    assert sample(families, "collabadmin_peer_connected", **new) == 1
    assert sample(families, "collabadmin_peer_in_maintenance", **old) == 1
    assert sample(families, "collabadmin_peer_in_maintenance", **new) == 0
    assert sample(families, "collabadmin_peer_consecutive_failures", **old) == 3
    assert sample(families, "collabadmin_peer_probe_latency_seconds", **old) == pytest.approx(0.0125)
    # Never probed successfully: no latency sample rather than a misleading zero.
    assert label_sets(families, "collabadmin_peer_probe_latency_seconds") == [old]


def test_server_up_is_one_only_for_a_healthy_server_and_carries_its_role(server):
    ServerFactory(name="agent-b", role="agent")
    Server.objects.filter(name="agent-b").update(health=Health.UP)

    families = scrape()

    assert sample(families, "collabadmin_server_up", server="agent-b", role="agent") == 1
    assert sample(families, "collabadmin_server_up", server="routing-a", role="routing") == 0


def test_a_degraded_server_is_up_and_degraded(server):
    Server.objects.filter(pk=server.pk).update(health=Health.UP, degraded_since=timezone.now())
    ServerFactory(name="routing-b")

    families = scrape()

    assert sample(families, "collabadmin_server_up", server="routing-a", role="routing") == 1
    assert sample(families, "collabadmin_server_degraded", server="routing-a", role="routing") == 1
    assert sample(families, "collabadmin_server_degraded", server="routing-b", role="routing") == 0


def test_sessions_by_state_list_every_state_and_the_queue_reports_depth_and_oldest_wait(server, agent):
    other = ServerFactory(name="routing-b")
    SessionFactory.create_batch(2, server=server)
    SessionFactory(server=server, queued_at=timezone.now() - timedelta(seconds=90))
    SessionFactory(server=server, state=SessionState.ACTIVE, agent=agent, routed_at=timezone.now())
    SessionFactory(server=other, state=SessionState.ENDED, end_reason=EndReason.AGENT_ENDED, ended_at=timezone.now())

    families = scrape()

    assert {s.labels["state"]: s.value for s in families["collabadmin_sessions"].samples} == {
        "queued": 3,
        "in_transit": 0,
        "active": 1,
        "ended": 1,
    }
    assert sample(families, "collabadmin_queue_depth", server="routing-a") == 3
    assert sample(families, "collabadmin_queue_depth", server="routing-b") == 0
    assert 90 <= sample(families, "collabadmin_queue_oldest_wait_seconds", server="routing-a") < 120
    assert sample(families, "collabadmin_queue_oldest_wait_seconds", server="routing-b") == 0


def test_agents_are_counted_by_state_per_server(server, agent, other_agent):
    Agent.objects.filter(pk=agent.pk).update(state=AgentState.READY)

    families = scrape()

    assert sample(families, "collabadmin_agents", server="routing-a", state="ready") == 1
    assert sample(families, "collabadmin_agents", server="routing-a", state="logged_out") == 1
    assert sample(families, "collabadmin_agents", server="routing-a", state="not_ready") == 0


def test_open_alerts_are_counted_by_kind_and_cleared_ones_are_not(server):
    AlertFactory(server=server, kind=AlertKind.CONFIG_OUT_OF_SYNC)
    AlertFactory(server=ServerFactory(name="routing-b"), kind=AlertKind.CONFIG_OUT_OF_SYNC)
    AlertFactory(server=server, kind=AlertKind.LINK_DOWN, cleared_at=timezone.now())

    families = scrape()

    assert {s.labels["kind"]: s.value for s in families["collabadmin_alerts_open"].samples} == {
        "config_out_of_sync": 2,
        "link_down": 0,
        "redundancy_lost": 0,
        "mb_without_icm": 0,
        "server_failed": 0,
        "server_degraded": 0,
    }


def test_health_monitor_active_follows_the_monitor_lease(db):
    assert metrics.MONITOR_LEASE_NAME == LEASE_NAME
    assert sample(scrape(), "collabadmin_health_monitor_active") == 0

    lease_acquire(name=LEASE_NAME, holder="node-1:123", ttl_seconds=30)

    assert sample(scrape(), "collabadmin_health_monitor_active") == 1


def test_the_monitor_reports_its_lateness_with_its_lease_renewals(db):
    assert sample(scrape(), "collabadmin_health_monitor_late_seconds") == 0
    token = lease_acquire(name=LEASE_NAME, holder="node-1:123", ttl_seconds=30)

    assert lease_renew(token=token, ttl_seconds=30, late_ms=250.0)

    assert sample(scrape(), "collabadmin_health_monitor_late_seconds") == pytest.approx(0.25)
    # A monitor that gave its lease up says nothing any more.
    lease_release(token=token)
    assert sample(scrape(), "collabadmin_health_monitor_late_seconds") == 0


def test_peers_available_counts_the_pairs_peers_up_and_out_of_maintenance(server, mb_pair):
    _, primary, secondary = mb_pair
    key = {"server": "routing-a", "kind": "media_blender"}
    assert sample(scrape(), "collabadmin_link_peers_available", **key) == 2

    set_health(secondary, Health.DOWN)
    assert sample(scrape(), "collabadmin_link_peers_available", **key) == 1

    Peer.objects.filter(pk=primary.pk).update(in_maintenance=True, connection="standby", connected_epoch=None)
    assert sample(scrape(), "collabadmin_link_peers_available", **key) == 0
    # A link without peers is listed too, at zero.
    families = scrape()
    assert sample(families, "collabadmin_link_peers_available", server="routing-a", kind="admin_workstation") == 0


def test_every_metric_is_prefixed_and_has_help_text(server, mb_pair):
    families = scrape()

    expected = {
        "collabadmin_link_state",
        "collabadmin_link_epoch",
        "collabadmin_link_peers_available",
        "collabadmin_peer_up",
        "collabadmin_peer_connected",
        "collabadmin_peer_in_maintenance",
        "collabadmin_peer_probe_latency_seconds",
        "collabadmin_peer_consecutive_failures",
        "collabadmin_server_up",
        "collabadmin_server_degraded",
        "collabadmin_failovers",
        "collabadmin_failover_detection_seconds",
        "collabadmin_failover_switchover_seconds",
        "collabadmin_failure_detections",
        "collabadmin_sessions",
        "collabadmin_queue_depth",
        "collabadmin_queue_oldest_wait_seconds",
        "collabadmin_alerts_open",
        "collabadmin_agents",
        "collabadmin_health_monitor_active",
        "collabadmin_health_monitor_late_seconds",
        "collabadmin_task_queue_waiting",
        "collabadmin_task_queue_oldest_wait_seconds",
    }
    assert set(families) == expected
    assert all(family.documentation for family in families.values())


# --- Cost ------------------------------------------------------------------------------------


def populate(name: str) -> None:
    server = ServerFactory(name=name)
    for kind in PeerKind.values:
        for priority in PeerPriority.values:
            peer = PeerFactory(server=server, kind=kind, priority=priority, name=f"{name}-{kind[:2]}-{priority}")
            set_health(peer, Health.UP)
    agent = AgentFactory(server=server)
    SessionFactory.create_batch(3, server=server)
    SessionFactory(server=server, state=SessionState.ACTIVE, agent=agent, routed_at=timezone.now())
    AlertFactory(server=server)


def count_scrape_queries() -> int:
    with CaptureQueriesContext(connection) as queries:
        scrape()
    return len(queries)


def test_a_scrape_costs_the_same_number_of_queries_for_one_server_and_for_ten(db):
    populate("server-0")
    one = count_scrape_queries()
    for n in range(1, 10):
        populate(f"server-{n}")

    ten = count_scrape_queries()

    assert Server.objects.count() == 10
    assert one == ten == 10


# --- Access ----------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_an_anonymous_scraper_on_this_host_is_allowed(address):
    response = Client(REMOTE_ADDR=address).get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"] == metrics.CONTENT_TYPE_LATEST
    assert "max-age=0" in response["Cache-Control"]


def test_an_anonymous_scraper_from_another_address_is_refused():
    response = Client(REMOTE_ADDR=REMOTE).get("/metrics")

    assert response.status_code == 403
    assert b"collabadmin_" not in response.content


def test_a_network_in_metrics_allowed_ips_lets_its_scrapers_in(settings):
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]

    assert Client(REMOTE_ADDR="10.20.30.40").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 403


def test_an_empty_allow_list_refuses_every_anonymous_scraper(settings):
    settings.METRICS_ALLOWED_IPS = []

    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 403


def test_a_staff_user_may_scrape_from_anywhere_and_a_non_staff_user_may_not():
    staff = Client(REMOTE_ADDR=REMOTE)
    staff.force_login(StaffFactory())
    plain = Client(REMOTE_ADDR=REMOTE)
    plain.force_login(UserFactory())

    assert staff.get("/metrics").status_code == 200
    assert plain.get("/metrics").status_code == 403


def test_the_bearer_token_opens_metrics_and_a_wrong_one_does_not(settings):
    settings.METRICS_TOKEN = "s3cret-scrape-token"
    client = Client(REMOTE_ADDR=REMOTE)

    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token").status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Token s3cret-scrape-token").status_code == 403
    assert client.get("/metrics").status_code == 403


def test_no_token_is_accepted_when_metrics_token_is_unset(settings):
    settings.METRICS_TOKEN = ""

    response = Client(REMOTE_ADDR=REMOTE).get("/metrics", HTTP_AUTHORIZATION="Bearer ")

    assert response.status_code == 403


def test_only_get_is_allowed():
    assert Client().post("/metrics").status_code == 405


def test_a_database_failure_answers_503_so_prometheus_records_the_target_down(monkeypatch):
    def broken(self):
        raise OperationalError("connection refused")

    monkeypatch.setattr(metrics.DatabaseCollector, "collect", broken)

    response = Client().get("/metrics")

    assert response.status_code == 503
