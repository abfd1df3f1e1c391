"""What administrators do about alerts: acknowledge one, silence a server's for a while.

*Acknowledged*: a person has seen the alert and is on it (who, when, a note). It stays
acknowledged while it is raised again (``alert_raise`` refreshes the same open row); once
cleared, a new occurrence is a new row, unacknowledged.

*Silenced*: a maintenance window on a server (from now, for a stated number of minutes,
with a reason; it ends by itself at its time or can be ended early). Alerts are still
raised, cleared and shown during it; they notify no one: :func:`alert_is_silenced` and
:func:`alerts_to_notify` are what notifications ask.

Every change here is one transaction, audited (reason, before and after) and pushed live.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from common import live
from common.actors import Actor, user_of
from failover.choices import AuditAction
from failover.models import Alert, Server, ServerSilence
from failover.services.alerts import alert_event
from failover.services.audit import actor_label, audit_record, check_reason

# What is silenced is read in failover.services.silences (notifications ask it too); the
# names stay importable from here.
from failover.services.silences import (  # noqa: F401 (re-exported)
    active_silences,
    alert_is_silenced,
    alerts_to_notify,
    server_silence,
    silenced_q,
)

# A maintenance window is stated in whole minutes, from one minute to seven days: longer
# than a week is forgetting the server, not maintaining it.
SILENCE_MIN_MINUTES = 1
SILENCE_MAX_MINUTES = 7 * 24 * 60


class AlertActionRefused(ValidationError):
    """The current state refuses the action (the alert is cleared or already acknowledged,
    the server is not silenced): the API's 409, the page's error message."""


def _required_text(value: str, field: str, what: str) -> str:
    value = check_reason(value, field=field)
    if not value:
        raise ValidationError({field: f"Give {what}."})
    return value


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


# --- Acknowledge ----------------------------------------------------------------------------------


@transaction.atomic
def alert_acknowledge(*, alert_id: int, actor: Actor, note: str) -> Alert:
    """Record that ``actor`` has seen the open alert and is on it, with a ``note``.

    Refused (``AlertActionRefused``) when the alert is cleared or already acknowledged:
    the first acknowledgement, and its note, stand."""
    note = _required_text(note, "note", "a note (what you are doing about it)")
    alert = Alert.objects.select_for_update(of=("self",)).select_related("server").get(pk=alert_id)
    if not alert.is_open:
        raise AlertActionRefused("This alert is cleared already; there is nothing to acknowledge.")
    if alert.is_acknowledged:
        raise AlertActionRefused(
            f"Already acknowledged by {alert.acknowledged_by_name} at {alert.acknowledged_at:%Y-%m-%d %H:%M:%S}."
        )
    alert.acknowledged_at = timezone.now()
    alert.acknowledged_by = user_of(actor)
    alert.acknowledged_by_name = actor_label(actor)
    alert.acknowledge_note = note
    alert.save(update_fields=["acknowledged_at", "acknowledged_by", "acknowledged_by_name", "acknowledge_note"])
    audit_record(
        actor=actor,
        action=AuditAction.ALERT_ACKNOWLEDGED,
        target=alert,
        reason=note,
        before={"acknowledged": False},
        after={"acknowledged": True, "acknowledged_at": _iso(alert.acknowledged_at)},
    )
    live.publish("alert.changed", alert_event(alert))
    return alert


# --- Silence ----------------------------------------------------------------------------------------


def _silence_state(silence: ServerSilence | None) -> dict:
    if silence is None:
        return {"silenced": False}
    return {"silenced": True, "silence": silence.pk, "until": _iso(silence.until), "reason": silence.reason}


def _publish_silence(server: Server, silence: ServerSilence | None) -> None:
    live.publish("server.silence_changed", {"server": server.pk, "name": server.name, **_silence_state(silence)})


def _end(silence: ServerSilence, *, at: datetime, actor: Actor, reason: str) -> None:
    silence.ended_at, silence.ended_by_name, silence.end_note = at, actor_label(actor), reason
    silence.save(update_fields=["ended_at", "ended_by_name", "end_note"])


def check_minutes(minutes: int) -> int:
    if not SILENCE_MIN_MINUTES <= minutes <= SILENCE_MAX_MINUTES:
        raise ValidationError(
            {"minutes": f"Silence for {SILENCE_MIN_MINUTES} to {SILENCE_MAX_MINUTES} minutes (7 days), not {minutes}."}
        )
    return minutes


@transaction.atomic
def server_silence_start(*, server_id: int, minutes: int, actor: Actor, reason: str) -> ServerSilence:
    """Silence the server's alerts from now for ``minutes`` (a maintenance window).

    A window already in force is replaced by this one (ended now, in the same
    transaction): the newest statement of the maintenance is the one that counts."""
    reason = _required_text(reason, "reason", "a reason (the maintenance)")
    minutes = check_minutes(minutes)
    server = Server.objects.select_for_update().get(pk=server_id)
    now = timezone.now()
    current = server_silence(server.pk, now)
    if current is not None:
        _end(current, at=now, actor=actor, reason=f"replaced: {reason}"[:300])
    silence = ServerSilence.objects.create(
        server=server,
        starts_at=now,
        ends_at=now + timedelta(minutes=minutes),
        reason=reason,
        created_by=user_of(actor),
        created_by_name=actor_label(actor),
    )
    audit_record(
        actor=actor,
        action=AuditAction.SERVER_SILENCED,
        target=server,
        reason=reason,
        before=_silence_state(current),
        after={**_silence_state(silence), "minutes": minutes},
    )
    _publish_silence(server, silence)
    return silence


@transaction.atomic
def server_silence_end(*, server_id: int, actor: Actor, reason: str) -> ServerSilence:
    """End the server's silence now, before its time; refused when none is in force."""
    reason = _required_text(reason, "reason", "a reason for ending the silence early")
    server = Server.objects.select_for_update().get(pk=server_id)
    now = timezone.now()
    silence = server_silence(server.pk, now)
    if silence is None:
        raise AlertActionRefused(f"{server.name}'s alerts are not silenced.")
    before = _silence_state(silence)
    _end(silence, at=now, actor=actor, reason=reason)
    audit_record(
        actor=actor,
        action=AuditAction.SERVER_UNSILENCED,
        target=server,
        reason=reason,
        before=before,
        after={"silenced": False, "ended_at": _iso(now)},
    )
    _publish_silence(server, None)
    return silence
