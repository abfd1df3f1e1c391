"""The administrators' actions over the API: switchover, maintenance and the policy."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from failover.choices import AuditAction, FailoverKind, Health, LinkState, PeerKind, PeerPriority
from failover.models import AuditEntry, FailoverEvent, Link, Peer, Policy
from failover.models.policy import SERVER_PROBE_TIMEOUT_FLOOR_MS
from failover.services.maintenance import peer_set_maintenance
from failover.services.policy import policy_update
from tests.factories import PeerFactory, ServerFactory
from tests.pairs import connected, set_health

pytestmark = pytest.mark.django_db


def switchover_url(link: Link) -> str:
    return f"/api/v1/links/{link.pk}/switchover/"


def maintenance_url(peer: Peer) -> str:
    return f"/api/v1/peers/{peer.pk}/maintenance/"


# --- Switchover ----------------------------------------------------------------------------


def test_an_administrator_switches_a_link_to_the_other_peer_with_a_reason(
    admin_api, mb_pair, live_events, django_capture_on_commit_callbacks
):
    link, primary, secondary = mb_pair

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_api.post(switchover_url(link), {"reason": "patching mb-1"}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["outcome"] == "switched"
    assert body["state"] == LinkState.CONNECTED
    assert body["epoch"] == 2
    assert body["active_peer"] == {"id": secondary.pk, "name": "mb-2"}
    assert connected(link) == ["mb-2"]
    event = FailoverEvent.objects.get(pk=body["event"])
    assert (event.kind, event.from_peer, event.to_peer, event.epoch) == (FailoverKind.MANUAL, primary, secondary, 2)
    assert event.actor.username == "admin"
    audit = AuditEntry.objects.get(action=AuditAction.LINK_SWITCHOVER, actor_name="user:admin")
    assert (audit.reason, audit.before["connected"], audit.after["connected"]) == ("patching mb-1", "mb-1", "mb-2")
    assert [e["data"]["to_peer"] for e in live_events if e["type"] == "link.changed"] == ["mb-2"]


def test_a_switchover_to_a_named_peer_that_is_already_connected_changes_nothing(admin_api, mb_pair):
    link, primary, _ = mb_pair
    events = FailoverEvent.objects.count()

    response = admin_api.post(switchover_url(link), {"reason": "make sure", "to_peer": primary.pk}, format="json")

    assert response.status_code == 200
    assert response.json()["outcome"] == "unchanged"
    assert response.json()["epoch"] == 1
    assert response.json()["event"] is None
    assert FailoverEvent.objects.count() == events


def test_a_switchover_carrying_the_current_epoch_goes_ahead(admin_api, mb_pair):
    link, _, _ = mb_pair

    response = admin_api.post(switchover_url(link), {"reason": "planned", "expected_epoch": 1}, format="json")

    assert response.status_code == 200
    assert response.json()["outcome"] == "switched"


def test_a_switchover_carrying_a_stale_epoch_is_a_409_with_the_current_epoch(admin_api, mb_pair):
    link, _, _ = mb_pair

    response = admin_api.post(switchover_url(link), {"reason": "planned", "expected_epoch": 0}, format="json")

    assert response.status_code == 409
    body = response.json()
    assert "stale" in body["detail"].lower()
    assert body["current_epoch"] == 1
    assert connected(link) == ["mb-1"]
    assert not AuditEntry.objects.filter(actor_name="user:admin").exists()


def test_a_switchover_to_a_peer_that_is_down_is_a_409(admin_api, mb_pair):
    link, _, secondary = mb_pair
    set_health(secondary, Health.DOWN)

    response = admin_api.post(switchover_url(link), {"reason": "planned"}, format="json")

    assert response.status_code == 409
    assert response.json() == {"detail": "mb-2 is not healthy (health: down); it cannot be connected."}
    assert connected(link) == ["mb-1"]


def test_a_switchover_to_a_peer_in_maintenance_is_a_409(admin_api, admin_user, mb_pair):
    link, _, secondary = mb_pair
    peer_set_maintenance(peer_id=secondary.pk, on=True, actor=admin_user, reason="firmware")

    response = admin_api.post(switchover_url(link), {"reason": "planned", "to_peer": secondary.pk}, format="json")

    assert response.status_code == 409
    assert response.json() == {"detail": "mb-2 is in maintenance; it cannot be connected."}


def test_a_switchover_on_a_link_without_a_second_peer_is_a_409(admin_api, server):
    only = PeerFactory(server=server, kind=PeerKind.ADMIN_WORKSTATION, priority=PeerPriority.PRIMARY, name="aw-1")
    set_health(only, Health.UP)
    link = Link.objects.get(server=server, kind=PeerKind.ADMIN_WORKSTATION)

    response = admin_api.post(switchover_url(link), {"reason": "planned"}, format="json")

    assert response.status_code == 409
    assert response.json() == {"detail": "This link has no other peer to switch to."}


def test_a_switchover_to_a_peer_of_another_link_is_a_400(admin_api, mb_pair, server):
    link, _, _ = mb_pair
    stranger = PeerFactory(server=ServerFactory(name="routing-b"), kind=PeerKind.MEDIA_BLENDER)

    response = admin_api.post(switchover_url(link), {"reason": "planned", "to_peer": stranger.pk}, format="json")

    assert response.status_code == 400
    assert response.json() == {"to_peer": [f"Peer {stranger.pk} is not part of this link."]}


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, "reason", "This field is required."),
        ({"reason": ""}, "reason", "This field may not be blank."),
        ({"reason": "   "}, "reason", "This field may not be blank."),
        ({"reason": "x" * 301}, "reason", "Ensure this field has no more than 300 characters."),
        ({"reason": "ok", "expected_epoch": "soon"}, "expected_epoch", "A valid integer is required."),
        ({"reason": "ok", "expected_epoch": -1}, "expected_epoch", "Ensure this value is greater than or equal to 0."),
        ({"reason": "ok", "to_peer": "mb-2"}, "to_peer", "A valid integer is required."),
    ],
)
def test_a_bad_switchover_request_is_a_400_that_names_the_field(admin_api, mb_pair, body, field, message):
    link, _, _ = mb_pair

    response = admin_api.post(switchover_url(link), body, format="json")

    assert response.status_code == 400
    assert response.json() == {field: [message]}
    assert connected(link) == ["mb-1"]


def test_a_switchover_of_an_unknown_link_is_a_json_404(admin_api):
    response = admin_api.post("/api/v1/links/999999/switchover/", {"reason": "planned"}, format="json")

    assert response.status_code == 404
    assert response.json() == {"detail": "No Link matches the given query."}


def test_an_agent_may_not_switch_a_link_over(agent_api, mb_pair):
    link, _, _ = mb_pair

    response = agent_api.post(switchover_url(link), {"reason": "I felt like it"}, format="json")

    assert response.status_code == 403
    assert response.json() == {"detail": "Your role does not allow this (it needs: switch links over)."}
    assert connected(link) == ["mb-1"]


def test_an_anonymous_switchover_is_refused(anonymous_api, mb_pair):
    link, _, _ = mb_pair

    response = anonymous_api.post(switchover_url(link), {"reason": "hello"}, format="json")

    assert response.status_code in (401, 403)
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    assert connected(link) == ["mb-1"]


def test_a_switchover_is_a_post_only(admin_api, mb_pair):
    link, _, _ = mb_pair

    assert admin_api.get(switchover_url(link)).status_code == 405


# --- Maintenance ---------------------------------------------------------------------------


def test_maintenance_on_drains_the_connected_peer_to_the_other_one(
    admin_api, mb_pair, live_events, django_capture_on_commit_callbacks
):
    link, primary, secondary = mb_pair

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_api.post(maintenance_url(primary), {"on": True, "reason": "firmware"}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["id"], body["in_maintenance"], body["display_state"]) == (primary.pk, True, "maintenance")
    assert body["maintenance_reason"] == "firmware"
    assert body["connection"] == "standby"
    switchover = body["switchover"]
    assert switchover["outcome"] == "switched"
    assert switchover["active_peer"] == {"id": secondary.pk, "name": "mb-2"}
    assert switchover["epoch"] == 2
    assert FailoverEvent.objects.get(pk=switchover["event"]).kind == FailoverKind.MAINTENANCE
    audit = AuditEntry.objects.get(action=AuditAction.PEER_MAINTENANCE_ON)
    assert (audit.actor_name, audit.reason, audit.object_id) == ("user:admin", "firmware", str(primary.pk))
    assert AuditEntry.objects.filter(action=AuditAction.LINK_SWITCHOVER, actor_name="user:admin").count() == 1
    assert {e["type"] for e in live_events} >= {"link.changed", "peer.changed"}


def test_maintenance_on_a_standby_peer_switches_nothing(admin_api, mb_pair):
    link, _, secondary = mb_pair

    response = admin_api.post(maintenance_url(secondary), {"on": True, "reason": "cabling"}, format="json")

    assert response.status_code == 200
    assert response.json()["in_maintenance"] is True
    assert response.json()["switchover"] is None
    assert connected(link) == ["mb-1"]


def test_maintenance_off_restores_a_link_it_had_left_down(admin_api, admin_user, mb_pair):
    link, primary, secondary = mb_pair
    set_health(secondary, Health.DOWN)
    peer_set_maintenance(peer_id=primary.pk, on=True, actor=admin_user, reason="firmware")
    link.refresh_from_db()
    assert link.state == LinkState.DOWN

    response = admin_api.post(maintenance_url(primary), {"on": False, "reason": "firmware done"}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert (body["in_maintenance"], body["maintenance_reason"], body["display_state"]) == (False, "", "connected")
    assert body["switchover"]["outcome"] == "restored"
    assert body["switchover"]["state"] == LinkState.CONNECTED
    assert body["switchover"]["active_peer"] == {"id": primary.pk, "name": "mb-1"}
    audit = AuditEntry.objects.get(action=AuditAction.PEER_MAINTENANCE_OFF)
    assert (audit.actor_name, audit.reason) == ("user:admin", "firmware done")


def test_asking_for_maintenance_twice_changes_nothing_the_second_time(admin_api, mb_pair):
    _, primary, _ = mb_pair
    admin_api.post(maintenance_url(primary), {"on": True, "reason": "firmware"}, format="json")
    audits = AuditEntry.objects.count()

    response = admin_api.post(maintenance_url(primary), {"on": True, "reason": "firmware again"}, format="json")

    assert response.status_code == 200
    assert response.json()["switchover"] is None
    assert response.json()["maintenance_reason"] == "firmware"
    assert AuditEntry.objects.count() == audits


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, {"on": ["This field is required."], "reason": ["This field is required."]}),
        ({"on": True, "reason": " "}, {"reason": ["This field may not be blank."]}),
        ({"on": "perhaps", "reason": "firmware"}, {"on": ["Must be a valid boolean."]}),
    ],
)
def test_a_bad_maintenance_request_is_a_400_that_names_the_fields(admin_api, mb_pair, body, errors):
    _, primary, _ = mb_pair

    response = admin_api.post(maintenance_url(primary), body, format="json")

    assert response.status_code == 400
    assert response.json() == errors
    primary.refresh_from_db()
    assert primary.in_maintenance is False


def test_an_agent_may_not_put_a_peer_into_maintenance(agent_api, mb_pair):
    _, primary, _ = mb_pair

    response = agent_api.post(maintenance_url(primary), {"on": True, "reason": "firmware"}, format="json")

    assert response.status_code == 403
    primary.refresh_from_db()
    assert primary.in_maintenance is False


def test_an_anonymous_maintenance_request_is_refused(anonymous_api, mb_pair):
    _, primary, _ = mb_pair

    response = anonymous_api.post(maintenance_url(primary), {"on": True, "reason": "firmware"}, format="json")

    assert response.status_code in (401, 403)


# --- Policy --------------------------------------------------------------------------------


def test_an_administrator_reads_the_policy_with_its_defaults(admin_api):
    response = admin_api.get("/api/v1/policy/")

    assert response.status_code == 200
    body = response.json()
    assert body["probe_interval_ms"] == 500
    assert body["probe_timeout_ms"] == 400
    assert body["fail_back_after_minutes"] is None
    assert body["adopt_queued_on_server_failure"] is True
    assert "reason" not in body


def test_an_administrator_changes_the_policy_with_a_reason_and_it_is_audited(
    admin_api, live_events, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_api.patch(
            "/api/v1/policy/",
            {"reason": "fail back overnight", "fail_back_after_minutes": 15, "probe_interval_ms": 500, "rise": 3},
            format="json",
        )

    assert response.status_code == 200, response.content
    assert (response.json()["fail_back_after_minutes"], response.json()["rise"]) == (15, 3)
    policy = Policy.current()
    assert (policy.fail_back_after_minutes, policy.rise) == (15, 3)
    audit = AuditEntry.objects.get(action=AuditAction.POLICY_CHANGED)
    assert (audit.actor_name, audit.reason) == ("user:admin", "fail back overnight")
    # Only what changed: probe_interval_ms was sent with the value it already had.
    assert audit.before == {"fail_back_after_minutes": None, "rise": 2}
    assert audit.after == {"fail_back_after_minutes": 15, "rise": 3}
    assert [e["data"]["changes"] for e in live_events if e["type"] == "policy.changed"] == [
        {"fail_back_after_minutes": 15, "rise": 3}
    ]


def test_a_policy_change_may_clear_the_fail_back_delay(admin_api):
    Policy.objects.update_or_create(id=1, defaults={"fail_back_after_minutes": 10})

    response = admin_api.patch(
        "/api/v1/policy/", {"reason": "back to non-preemptive", "fail_back_after_minutes": None}, format="json"
    )

    assert response.status_code == 200
    assert Policy.current().fail_back_after_minutes is None


def test_a_probe_timeout_longer_than_the_interval_is_allowed(admin_api):
    response = admin_api.patch(
        "/api/v1/policy/", {"reason": "slow WAN", "probe_interval_ms": 100, "probe_timeout_ms": 900}, format="json"
    )

    assert response.status_code == 200


def test_a_policy_change_to_the_same_values_writes_no_audit_entry(admin_api):
    response = admin_api.patch("/api/v1/policy/", {"reason": "no-op", "rise": 2}, format="json")

    assert response.status_code == 200
    assert not AuditEntry.objects.filter(action=AuditAction.POLICY_CHANGED).exists()


def at_least(n: int) -> list[str]:
    return [f"Ensure this value is greater than or equal to {n}."]


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"rise": 3}, {"reason": ["This field is required."]}),
        ({"reason": "  ", "rise": 3}, {"reason": ["This field may not be blank."]}),
        ({"reason": "r", "probe_interval_ms": 10}, {"probe_interval_ms": at_least(50)}),
        ({"reason": "r", "probe_timeout_ms": 5}, {"probe_timeout_ms": at_least(20)}),
        ({"reason": "r", "rise": 0}, {"rise": at_least(1)}),
        ({"reason": "r", "fail_back_after_minutes": -1}, {"fail_back_after_minutes": at_least(0)}),
        ({"reason": "r", "probe_interval_ms": "fast"}, {"probe_interval_ms": ["A valid integer is required."]}),
        ({"reason": "r", "probe_intervall_ms": 100}, {"probe_intervall_ms": ["Not a policy field."]}),
        ({"reason": "r", "updated_at": "2020-01-01T00:00:00Z"}, {"updated_at": ["This field is read-only."]}),
    ],
)
def test_a_bad_policy_change_is_a_400_with_a_message_per_field(admin_api, body, errors):
    response = admin_api.patch("/api/v1/policy/", body, format="json")

    assert response.status_code == 400
    assert response.json() == errors
    assert Policy.current().rise == 2
    assert not AuditEntry.objects.filter(action=AuditAction.POLICY_CHANGED).exists()


@pytest.mark.parametrize("method", ["get", "patch"])
def test_an_agent_may_not_read_or_change_the_policy(agent_api, method):
    response = getattr(agent_api, method)("/api/v1/policy/", {"reason": "mine now", "rise": 9}, format="json")

    assert response.status_code == 403
    assert Policy.current().rise == 2


@pytest.mark.parametrize("method", ["get", "patch"])
def test_an_anonymous_policy_request_is_refused(anonymous_api, method):
    response = getattr(anonymous_api, method)("/api/v1/policy/", {"reason": "hello", "rise": 9}, format="json")

    assert response.status_code in (401, 403)


def test_the_policy_cannot_be_replaced_wholesale(admin_api):
    assert admin_api.put("/api/v1/policy/", {"reason": "r"}, format="json").status_code == 405


def test_the_policy_service_refuses_a_blank_reason_and_unknown_fields(admin_user):
    with pytest.raises(ValidationError) as blank:
        policy_update(actor=admin_user, reason=" ", changes={"rise": 3})
    with pytest.raises(ValidationError) as unknown:
        policy_update(actor=admin_user, reason="r", changes={"id": 2, "colour": "red"})

    assert blank.value.message_dict == {"reason": ["Give a reason for the policy change."]}
    assert set(unknown.value.message_dict) == {"colour", "id"}
    assert Policy.current().rise == 2


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("server_probe_timeout_ms", 20, "a node busy with requests can take that long to answer /healthz"),
        ("server_probe_timeout_ms", SERVER_PROBE_TIMEOUT_FLOOR_MS - 1, "a shorter time-out makes a busy node look"),
        ("server_silence_seconds", 1, "a shorter silence reads one late write as a dead node"),
        ("server_unresponsive_seconds", 5, "only a long silence is evidence"),
        ("server_probe_interval_ms", 50, "each probe opens a new connection"),
    ],
)
def test_server_thresholds_that_make_a_false_server_failure_likely_are_refused_with_a_reason(
    admin_api, field, value, why
):
    """The fuzzing run set 20 ms probe time-outs through the API, and a busy node's late
    /healthz answer ended its server's work. Servers' thresholds have floors now."""
    response = admin_api.patch("/api/v1/policy/", {"reason": "faster", field: value}, format="json")

    assert response.status_code == 400
    [message] = response.json()[field]
    assert message.startswith("Must be at least")
    assert why in message
    assert getattr(Policy.current(), field) == Policy._meta.get_field(field).default


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("server_probe_interval_ms", 10_001),
        ("server_probe_timeout_ms", 60_000),
        ("server_silence_seconds", 61),
        ("server_unresponsive_seconds", 3600),
    ],
)
def test_server_thresholds_that_would_make_a_failure_wait_for_minutes_are_refused(admin_api, field, value):
    response = admin_api.patch("/api/v1/policy/", {"reason": "slower", field: value}, format="json")

    assert response.status_code == 400
    [message] = response.json()[field]
    assert message.startswith("Must be at most")
    assert getattr(Policy.current(), field) == Policy._meta.get_field(field).default


def test_a_server_without_a_heartbeat_may_not_be_failed_sooner_than_one_whose_heartbeat_stopped(admin_api):
    body = {"reason": "r", "server_silence_seconds": 20, "server_unresponsive_seconds": 15}

    response = admin_api.patch("/api/v1/policy/", body, format="json")

    assert response.status_code == 400
    assert "at least the server silence (20 s)" in str(response.json())
    assert Policy.current().server_unresponsive_seconds == 30


def test_the_policy_service_validates_with_the_models_validators(admin_user):
    with pytest.raises(ValidationError) as invalid:
        policy_update(actor=admin_user, reason="r", changes={"probe_interval_ms": 49, "rise": 5})

    assert invalid.value.message_dict == {"probe_interval_ms": at_least(50)}
    assert Policy.current().rise == 2


# --- Schema --------------------------------------------------------------------------------


def test_the_schema_documents_the_actions_and_their_error_codes(admin_client):
    schema = admin_client.get("/api/v1/schema/", {"format": "json"}).json()
    paths, components = schema["paths"], schema["components"]["schemas"]

    switchover = paths["/api/v1/links/{id}/switchover/"]["post"]
    assert set(switchover["responses"]) >= {"200", "400", "403", "404", "409"}
    assert "current_epoch" in components["Conflict"]["properties"]
    assert {"outcome", "event", "active_peer", "epoch"} <= set(components["SwitchoverResult"]["properties"])
    assert components["SwitchoverRequest"]["required"] == ["reason"]
    assert set(paths["/api/v1/peers/{id}/maintenance/"]["post"]["responses"]) >= {"200", "400", "403", "404"}
    assert set(paths["/api/v1/policy/"]) >= {"get", "patch"}


@pytest.mark.parametrize("interval_ms", [0, 20, 100, 10_000])
def test_peer_heartbeats_may_be_turned_off_or_set_from_20_ms_to_10_s(admin_api, interval_ms):
    body = {"reason": "heartbeats", "heartbeat_interval_ms": interval_ms, "heartbeat_suspicion": 10.5}

    response = admin_api.patch("/api/v1/policy/", body, format="json")

    assert response.status_code == 200, response.json()
    policy = Policy.current()
    assert (policy.heartbeat_interval_ms, policy.heartbeat_suspicion) == (interval_ms, 10.5)


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("heartbeat_interval_ms", 19, "Must be 0 (no heartbeats) or at least 20 ms"),
        ("heartbeat_interval_ms", 10_001, "less than or equal to 10000"),
        ("heartbeat_suspicion", 0.5, "greater than or equal to 1.0"),
        ("heartbeat_suspicion", 31, "less than or equal to 30.0"),
    ],
)
def test_heartbeat_settings_out_of_range_are_refused_with_a_reason(admin_api, field, value, why):
    response = admin_api.patch("/api/v1/policy/", {"reason": "r", field: value}, format="json")

    assert response.status_code == 400
    assert why in str(response.json()[field])
    assert getattr(Policy.current(), field) == Policy._meta.get_field(field).default
