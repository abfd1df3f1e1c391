"""Acknowledge and silence over the API (issue 19, point 2): /api/v1/alerts/,
POST /api/v1/alerts/{id}/acknowledge/, POST /api/v1/servers/{id}/silence/ and /unsilence/."""

from __future__ import annotations

import pytest

from common.actors import MONITOR
from failover.choices import AlertKind, AlertSeverity, AuditAction
from failover.models import Alert, AuditEntry, ServerSilence
from failover.services.alert_actions import SILENCE_MAX_MINUTES, alert_is_silenced, server_silence_start
from failover.services.alerts import alert_clear, alert_raise
from tests.factories import AlertFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def alert(server) -> Alert:
    return alert_raise(
        server=server,
        kind=AlertKind.CONFIG_OUT_OF_SYNC,
        message="configuration may be out of sync",
        severity=AlertSeverity.WARNING,
        actor=MONITOR,
    )


def ack_url(alert: Alert) -> str:
    return f"/api/v1/alerts/{alert.pk}/acknowledge/"


def silence_url(server, verb: str = "silence") -> str:
    return f"/api/v1/servers/{server.pk}/{verb}/"


# --- Who may --------------------------------------------------------------------------------------


@pytest.mark.parametrize("client_fixture", ["anonymous_api", "agent_api", "visitor_api"])
def test_only_staff_may_acknowledge_or_silence(request, client_fixture, alert, server):
    client = request.getfixturevalue(client_fixture)

    answers = [
        client.post(ack_url(alert), {"note": "x"}, format="json").status_code,
        client.post(silence_url(server), {"minutes": 5, "reason": "x"}, format="json").status_code,
        client.post(silence_url(server, "unsilence"), {"reason": "x"}, format="json").status_code,
        client.get("/api/v1/alerts/").status_code,
    ]

    assert set(answers) <= {401, 403}, answers
    assert not Alert.objects.get(pk=alert.pk).is_acknowledged
    assert not ServerSilence.objects.exists()


# --- Acknowledge ----------------------------------------------------------------------------------


def test_staff_acknowledge_an_alert_with_a_note(admin_api, alert, live_events, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_api.post(ack_url(alert), {"note": "restarting the AW"}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["acknowledged_by_name"], body["acknowledge_note"]) == ("user:admin", "restarting the AW")
    assert body["acknowledged_at"] is not None
    assert body["silenced"] is False
    entry = AuditEntry.objects.get(action=AuditAction.ALERT_ACKNOWLEDGED)
    assert (entry.actor_name, entry.reason) == ("user:admin", "restarting the AW")
    assert [e["data"]["acknowledged"] for e in live_events if e["type"] == "alert.changed"] == [True]


@pytest.mark.parametrize("body", [{}, {"note": ""}, {"note": "   "}, {"note": "x" * 301}])
def test_a_missing_blank_or_too_long_note_is_a_400(admin_api, alert, body):
    response = admin_api.post(ack_url(alert), body, format="json")

    assert response.status_code == 400
    assert "note" in response.json()
    assert not Alert.objects.get(pk=alert.pk).is_acknowledged


def test_a_cleared_or_acknowledged_alert_is_a_409(admin_api, alert, server):
    assert admin_api.post(ack_url(alert), {"note": "first"}, format="json").status_code == 200

    twice = admin_api.post(ack_url(alert), {"note": "second"}, format="json")
    alert_clear(server=server, kind=AlertKind.CONFIG_OUT_OF_SYNC, actor=MONITOR, reason="verified")
    cleared = admin_api.post(ack_url(alert), {"note": "late"}, format="json")

    assert twice.status_code == 409
    assert "Already acknowledged by user:admin" in twice.json()["detail"]
    assert cleared.status_code == 409
    assert "cleared" in cleared.json()["detail"]


def test_an_unknown_alert_is_a_404(admin_api):
    assert admin_api.post("/api/v1/alerts/999999/acknowledge/", {"note": "x"}, format="json").status_code == 404


def test_alerts_list_and_filter(admin_api, alert, server):
    cleared = AlertFactory(server=server, kind=AlertKind.LINK_DOWN)
    alert_clear(server=server, kind=AlertKind.LINK_DOWN, actor=MONITOR, reason="up")
    server_silence_start(server_id=server.pk, minutes=10, actor=MONITOR, reason="window")

    every = admin_api.get("/api/v1/alerts/").json()["results"]
    open_only = admin_api.get("/api/v1/alerts/", {"open": "true"}).json()["results"]

    assert {row["id"] for row in every} == {alert.pk, cleared.pk}
    assert [row["id"] for row in open_only] == [alert.pk]
    assert open_only[0]["silenced"] is True
    assert admin_api.get("/api/v1/alerts/", {"kind": "nonsense"}).status_code == 400


# --- Silence --------------------------------------------------------------------------------------


def test_staff_silence_a_server_and_end_it_early(admin_api, server, alert):
    response = admin_api.post(silence_url(server), {"minutes": 90, "reason": "AW upgrade"}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["reason"], body["created_by_name"], body["ended_at"]) == ("AW upgrade", "user:admin", None)
    assert alert_is_silenced(alert)
    assert admin_api.get(f"/api/v1/servers/{server.pk}/").json()["silenced_until"] == body["ends_at"]
    audit = AuditEntry.objects.get(action=AuditAction.SERVER_SILENCED)
    assert (audit.reason, audit.after["minutes"]) == ("AW upgrade", 90)

    ended = admin_api.post(silence_url(server, "unsilence"), {"reason": "finished"}, format="json")

    assert ended.status_code == 200, ended.content
    assert ended.json()["end_note"] == "finished"
    assert ended.json()["until"] == ended.json()["ended_at"]
    assert not alert_is_silenced(alert)
    assert admin_api.get(f"/api/v1/servers/{server.pk}/").json()["silenced_until"] is None
    assert AuditEntry.objects.get(action=AuditAction.SERVER_UNSILENCED).reason == "finished"


def test_ending_a_silence_that_is_not_there_is_a_409(admin_api, server):
    response = admin_api.post(silence_url(server, "unsilence"), {"reason": "finished"}, format="json")

    assert response.status_code == 409
    assert "not silenced" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"minutes": 0, "reason": "x"}, "minutes"),
        ({"minutes": -1, "reason": "x"}, "minutes"),
        ({"minutes": SILENCE_MAX_MINUTES + 1, "reason": "x"}, "minutes"),
        ({"minutes": "soon", "reason": "x"}, "minutes"),
        ({"reason": "x"}, "minutes"),
        ({"minutes": 30}, "reason"),
        ({"minutes": 30, "reason": "  "}, "reason"),
    ],
)
def test_bad_silence_input_is_a_400_naming_the_field(admin_api, server, body, field):
    response = admin_api.post(silence_url(server), body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert not ServerSilence.objects.exists()


def test_a_silence_of_exactly_seven_days_is_accepted(admin_api, server):
    response = admin_api.post(silence_url(server), {"minutes": SILENCE_MAX_MINUTES, "reason": "x"}, format="json")

    assert response.status_code == 200


def test_the_status_snapshot_shows_who_acknowledged_and_until_when_silenced(admin_api, admin_user, alert, server):
    admin_api.post(ack_url(alert), {"note": "on it"}, format="json")
    silence = server_silence_start(server_id=server.pk, minutes=15, actor=admin_user, reason="window")

    (entry,) = admin_api.get("/api/v1/status/").json()["alerts"]

    assert (entry["acknowledged_by"], entry["acknowledge_note"]) == ("user:admin", "on it")
    assert entry["acknowledged_at"] is not None
    assert entry["silenced_until"] == silence.ends_at.isoformat().replace("+00:00", "Z")
