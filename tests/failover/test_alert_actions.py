"""Acknowledge and silence (issue 19, point 2): the services of
failover/services/alert_actions.py, and what point 3's notifications will ask of them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from common import live
from common.actors import MONITOR
from failover.choices import AlertKind, AlertSeverity, AuditAction
from failover.models import Alert, AuditEntry, ServerSilence
from failover.services.alert_actions import (
    AlertActionRefused,
    alert_acknowledge,
    alert_is_silenced,
    alerts_to_notify,
    server_silence,
    server_silence_end,
    server_silence_start,
)
from failover.services.alerts import alert_clear, alert_raise
from tests.factories import ServerFactory, StaffFactory

pytestmark = pytest.mark.django_db


def raise_sync_alert(server, message: str = "configuration may be out of sync") -> Alert:
    return alert_raise(
        server=server,
        kind=AlertKind.CONFIG_OUT_OF_SYNC,
        message=message,
        severity=AlertSeverity.WARNING,
        actor=MONITOR,
    )


@pytest.fixture
def staff(db):
    return StaffFactory(username="ops")


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, dict]]:
    events: list[tuple[str, dict]] = []
    monkeypatch.setattr(live, "send_now", lambda kind, data, groups: events.append((kind, data)))
    return events


# --- Acknowledge ---------------------------------------------------------------------------------


def test_acknowledging_records_who_when_and_the_note_audited_and_live(
    server, staff, sent, django_capture_on_commit_callbacks
):
    alert = raise_sync_alert(server)

    with django_capture_on_commit_callbacks(execute=True):
        alert_acknowledge(alert_id=alert.pk, actor=staff, note="  looking at the AW  ")

    alert.refresh_from_db()
    assert alert.is_acknowledged
    assert (alert.acknowledged_by, alert.acknowledged_by_name, alert.acknowledge_note) == (
        staff,
        "user:ops",
        "looking at the AW",
    )
    entry = AuditEntry.objects.get(action=AuditAction.ALERT_ACKNOWLEDGED)
    assert (entry.actor_name, entry.reason, entry.object_id) == ("user:ops", "looking at the AW", str(alert.pk))
    assert entry.before == {"acknowledged": False}
    assert entry.after["acknowledged"] is True
    assert ("alert.changed", {**sent[-1][1], "acknowledged": True, "acknowledged_by": "user:ops"}) == sent[-1]


def test_a_note_is_required(server, staff):
    alert = raise_sync_alert(server)

    with pytest.raises(ValidationError) as refused:
        alert_acknowledge(alert_id=alert.pk, actor=staff, note="   ")

    assert "note" in refused.value.message_dict
    assert not Alert.objects.get(pk=alert.pk).is_acknowledged
    assert not AuditEntry.objects.filter(action=AuditAction.ALERT_ACKNOWLEDGED).exists()


def test_a_cleared_or_already_acknowledged_alert_is_refused(server, staff):
    alert = raise_sync_alert(server)
    alert_acknowledge(alert_id=alert.pk, actor=staff, note="first")

    with pytest.raises(AlertActionRefused, match="Already acknowledged by user:ops"):
        alert_acknowledge(alert_id=alert.pk, actor=StaffFactory(), note="second")
    alert_clear(server=server, kind=AlertKind.CONFIG_OUT_OF_SYNC, actor=MONITOR, reason="verified")
    with pytest.raises(AlertActionRefused, match="cleared already"):
        alert_acknowledge(alert_id=alert.pk, actor=staff, note="late")

    assert Alert.objects.get(pk=alert.pk).acknowledge_note == "first"


def test_raised_again_while_acknowledged_it_stays_acknowledged(server, staff):
    alert = raise_sync_alert(server)
    alert_acknowledge(alert_id=alert.pk, actor=staff, note="on it")

    again = raise_sync_alert(server, message="configuration may be out of sync (again)")

    assert again.pk == alert.pk
    again.refresh_from_db()
    assert again.is_acknowledged
    assert again.acknowledge_note == "on it"
    assert again.message.endswith("(again)")


def test_after_clearing_a_new_alert_is_unacknowledged(server, staff):
    alert = raise_sync_alert(server)
    alert_acknowledge(alert_id=alert.pk, actor=staff, note="on it")
    alert_clear(server=server, kind=AlertKind.CONFIG_OUT_OF_SYNC, actor=MONITOR, reason="verified")

    new = raise_sync_alert(server)

    assert new.pk != alert.pk
    assert not new.is_acknowledged
    assert Alert.objects.get(pk=alert.pk).is_acknowledged  # the history keeps the old one's


def test_the_database_refuses_half_an_acknowledgement(server):
    alert = raise_sync_alert(server)

    with pytest.raises(IntegrityError), transaction.atomic():
        Alert.objects.filter(pk=alert.pk).update(acknowledged_at=timezone.now())
    with pytest.raises(IntegrityError), transaction.atomic():
        Alert.objects.filter(pk=alert.pk).update(acknowledged_by_name="user:x", acknowledge_note="n")


# --- Silence ---------------------------------------------------------------------------------------


def test_a_silence_covers_the_alerts_raised_during_it_and_ends_by_itself(server, staff):
    other = ServerFactory(name="routing-b")
    silence = server_silence_start(server_id=server.pk, minutes=30, actor=staff, reason="AW patching")
    during = raise_sync_alert(server)
    elsewhere = raise_sync_alert(other)

    assert silence.ends_at - silence.starts_at == timedelta(minutes=30)
    assert alert_is_silenced(during)
    assert not alert_is_silenced(elsewhere)
    assert set(alerts_to_notify()) == {elsewhere}
    # At its time it is over, without anyone doing anything.
    assert alert_is_silenced(during, at=silence.ends_at - timedelta(microseconds=1))
    assert not alert_is_silenced(during, at=silence.ends_at)
    assert set(alerts_to_notify(at=silence.ends_at)) == {during, elsewhere}
    # And once that time has passed, "now" agrees.
    ServerSilence.objects.filter(pk=silence.pk).update(
        starts_at=timezone.now() - timedelta(minutes=31), ends_at=timezone.now() - timedelta(minutes=1)
    )
    assert not alert_is_silenced(during)
    assert server_silence(server.pk) is None


def test_a_silence_is_audited_and_pushed_live(server, staff, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        silence = server_silence_start(server_id=server.pk, minutes=60, actor=staff, reason="upgrade")

    entry = AuditEntry.objects.get(action=AuditAction.SERVER_SILENCED)
    assert (entry.actor_name, entry.reason, entry.object_id) == ("user:ops", "upgrade", str(server.pk))
    assert entry.before == {"silenced": False}
    assert entry.after["silenced"] is True
    assert entry.after["minutes"] == 60
    assert entry.after["until"] == silence.ends_at.isoformat()
    kind, data = sent[-1]
    assert kind == "server.silence_changed"
    assert data["silenced"] is True
    assert data["server"] == server.pk


def test_ending_a_silence_early(server, staff, sent, django_capture_on_commit_callbacks):
    silence = server_silence_start(server_id=server.pk, minutes=120, actor=staff, reason="upgrade")
    alert = raise_sync_alert(server)

    with django_capture_on_commit_callbacks(execute=True):
        server_silence_end(server_id=server.pk, actor=staff, reason="done early")

    silence.refresh_from_db()
    assert silence.ended_at is not None
    assert silence.ended_at < silence.ends_at
    assert (silence.ended_by_name, silence.end_note) == ("user:ops", "done early")
    assert not alert_is_silenced(alert)
    assert alert in alerts_to_notify()
    entry = AuditEntry.objects.get(action=AuditAction.SERVER_UNSILENCED)
    assert entry.before["silenced"] is True
    assert entry.after["silenced"] is False
    assert entry.reason == "done early"
    assert sent[-1] == ("server.silence_changed", {"server": server.pk, "name": server.name, "silenced": False})
    with pytest.raises(AlertActionRefused, match="not silenced"):
        server_silence_end(server_id=server.pk, actor=staff, reason="again")


def test_silencing_again_replaces_the_window(server, staff):
    first = server_silence_start(server_id=server.pk, minutes=10, actor=staff, reason="short")
    second = server_silence_start(server_id=server.pk, minutes=300, actor=staff, reason="longer after all")

    first.refresh_from_db()
    assert first.ended_at is not None
    assert first.end_note == "replaced: longer after all"
    assert server_silence(server.pk) == second
    entry = AuditEntry.objects.filter(action=AuditAction.SERVER_SILENCED).first()
    assert entry.before["silence"] == first.pk
    assert entry.after["silence"] == second.pk


@pytest.mark.parametrize("minutes", [0, -5, 7 * 24 * 60 + 1])
def test_a_silence_needs_minutes_within_a_week_and_a_reason(server, staff, minutes):
    with pytest.raises(ValidationError) as refused:
        server_silence_start(server_id=server.pk, minutes=minutes, actor=staff, reason="x")
    assert "minutes" in refused.value.message_dict
    with pytest.raises(ValidationError) as refused:
        server_silence_start(server_id=server.pk, minutes=5, actor=staff, reason=" ")
    assert "reason" in refused.value.message_dict
    assert not ServerSilence.objects.exists()


def test_the_database_refuses_a_window_that_ends_before_it_starts(server):
    now = timezone.now()
    with pytest.raises(IntegrityError), transaction.atomic():
        ServerSilence.objects.create(server=server, starts_at=now, ends_at=now, reason="x", created_by_name="u")
    with pytest.raises(IntegrityError), transaction.atomic():
        ServerSilence.objects.create(
            server=server, starts_at=now, ends_at=now + timedelta(minutes=1), reason="", created_by_name="u"
        )
