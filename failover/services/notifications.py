"""Telling people about alerts: one delivery per channel and event, sent at least once.

When an alert is raised or clears, :func:`notifications_queue` (called by ``alert_raise``
and ``alert_clear`` inside their transaction) writes one ``NotificationDelivery`` row per
channel that wants it, and only once that commits sends one Celery task per delivery
(``failover.notification_send``). Silenced alerts notify no one.

Each task makes one attempt (:func:`notification_attempt`): a slow or dead receiver
holds up its own deliveries only. On failure the task is retried with a doubling wait
(capped), for at least ``NOTIFY_RETRY_HOURS``; every attempt is recorded on the row. The
task carries the attempt number and claims the row for it, so two copies of one task
(a redelivered message, the sweep below) never make the same attempt twice at once.
Should a task be lost anyway (Redis restarted without persistence), the beat task
:func:`notifications_resend_lost` sends it again once it is overdue: nothing is lost,
and the receiver may see a delivery twice, always with the same delivery id.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from common.actors import Actor
from common.outbox import send_now, send_on_commit
from failover.choices import SEVERITY_RANK, AuditAction, NotificationEvent
from failover.models import Alert, NotificationChannel, NotificationDelivery
from failover.services.audit import audit_record, check_reason
from failover.services.notification_transport import DeliveryFailed, transmit
from failover.services.silences import alert_is_silenced

SEND_TASK = "failover.notification_send"
# A pending delivery this much past its due time has lost its task: send it again.
LOST_AFTER = timedelta(seconds=60)
RESEND_BATCH = 500
# A Celery countdown may fire a little before the time the row says (clocks, rounding).
EARLY_TOLERANCE = timedelta(seconds=2)


def retry_delay(failed_attempts: int) -> float:
    """Seconds to wait after the ``failed_attempts``-th failure: doubling, capped."""
    base, cap = settings.NOTIFY_RETRY_BASE_SECONDS, settings.NOTIFY_RETRY_MAX_SECONDS
    return min(base * 2 ** min(failed_attempts - 1, 40), cap)


def max_attempts() -> int:
    """The fewest attempts whose waits add up to ``NOTIFY_RETRY_HOURS`` (151 with the
    defaults: 5 s doubling to 10 min, for 24 h)."""
    goal, waited, attempts = settings.NOTIFY_RETRY_HOURS * 3600, 0.0, 1
    while waited < goal:
        waited += retry_delay(attempts)
        attempts += 1
    return attempts


def channel_wants(channel: NotificationChannel, alert: Alert) -> bool:
    kinds = channel.alert_kinds or []
    return (not kinds or alert.kind in kinds) and SEVERITY_RANK[alert.severity] >= SEVERITY_RANK[channel.min_severity]


def notifications_queue(alert: Alert, event: NotificationEvent) -> list[NotificationDelivery]:
    """Write the deliveries of ``alert``'s ``event`` (raised, cleared) in the caller's
    transaction; their tasks are sent when it commits. None while it is silenced."""
    if alert_is_silenced(alert):
        return []
    now = timezone.now()
    deliveries = [
        NotificationDelivery.objects.create(channel=channel, alert=alert, event=event, next_attempt_at=now)
        for channel in NotificationChannel.objects.filter(enabled=True)
        if channel_wants(channel, alert)
    ]
    for delivery in deliveries:
        send_on_commit(SEND_TASK, delivery.pk, 0)
    return deliveries


@transaction.atomic
def notification_test(*, channel_id: int, actor: Actor, note: str) -> NotificationDelivery:
    """Send a test notification over the channel (a delivery like any other), audited."""
    note = check_reason(note, field="note")
    if not note:
        raise ValidationError({"note": "Give a note (why you test it)."})
    channel = NotificationChannel.objects.select_for_update().get(pk=channel_id)
    if not channel.enabled:
        raise ValidationError(f"The channel {channel.name} is disabled: enable it in the configuration first.")
    delivery = NotificationDelivery.objects.create(
        channel=channel, event=NotificationEvent.TEST, next_attempt_at=timezone.now()
    )
    audit_record(
        actor=actor,
        action=AuditAction.NOTIFICATION_TEST,
        target=channel,
        reason=note,
        after={"delivery_id": str(delivery.delivery_id)},
    )
    send_on_commit(SEND_TASK, delivery.pk, 0)
    return delivery


def _claim(delivery_pk: int, attempt: int, now: datetime) -> bool:
    """Take the delivery for its ``attempt``-th attempt (0 = the first), or ``False`` when
    it is delivered, given up, not due, or another copy of the task has taken it."""
    lease = now + timedelta(seconds=settings.NOTIFY_HTTP_TIMEOUT_SECONDS + 30)
    return bool(
        NotificationDelivery.objects.filter(
            pk=delivery_pk, delivered_at__isnull=True, attempts=attempt, next_attempt_at__lte=now + EARLY_TOLERANCE
        ).update(next_attempt_at=lease)
    )


def notification_attempt(delivery_pk: int, attempt: int) -> float | None:
    """Make the delivery's ``attempt``-th attempt and record it. Returns the seconds to
    wait before the next one, or ``None`` when there is none (delivered, given up, or not
    this task's to make). Sends outside any transaction: no lock is held while waiting."""
    if not _claim(delivery_pk, attempt, timezone.now()):
        return None
    delivery = NotificationDelivery.objects.select_related("channel", "alert__server").get(pk=delivery_pk)
    error = ""
    if not delivery.channel.enabled:
        error = "channel disabled: not sent"
    else:
        try:
            transmit(delivery)
        except DeliveryFailed as failed:
            error = str(failed)[:500] or "failed"
    now = timezone.now()
    attempts = attempt + 1
    if not error:
        delivery_fields = {"delivered_at": now, "next_attempt_at": None, "last_error": ""}
        wait = None
    elif delivery.channel.enabled and attempts < max_attempts():
        wait = retry_delay(attempts)
        delivery_fields = {"next_attempt_at": now + timedelta(seconds=wait), "last_error": error}
    else:
        wait = None
        delivery_fields = {"next_attempt_at": None, "last_error": error}
    NotificationDelivery.objects.filter(pk=delivery_pk).update(attempts=attempts, **delivery_fields)
    return wait


def notifications_resend_lost(now: datetime | None = None) -> int:
    """Send again the tasks of pending deliveries long overdue (their task was lost);
    returns how many. Safe alongside the original task: the attempt number decides."""
    now = now or timezone.now()
    overdue = (
        NotificationDelivery.objects.filter(delivered_at__isnull=True, next_attempt_at__lte=now - LOST_AFTER)
        .order_by("next_attempt_at")
        .values_list("pk", "attempts")[:RESEND_BATCH]
    )
    return sum(send_now(SEND_TASK, pk, attempts) for pk, attempts in overdue)
