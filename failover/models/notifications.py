"""Where alerts are sent (channels, configured in the Django admin) and what was sent
(deliveries, one per channel and alert event, written by ``failover.services.notifications``)."""

from __future__ import annotations

import secrets
import uuid

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from failover.choices import AlertKind, AlertSeverity, NotificationEvent, NotificationKind


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class NotificationChannel(models.Model):
    """A webhook (a JSON POST signed with ``secret``) or a list of e-mail addresses, and
    which alerts it wants: the kinds (none ticked: every kind) at ``min_severity`` or above."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=NotificationKind.choices)
    enabled = models.BooleanField(default=True, help_text="Untick to stop sending to it (nothing is queued).")
    url = models.URLField(blank=True, max_length=500, help_text="Webhook: where to POST (http or https).")
    secret = models.CharField(
        max_length=200,
        default=new_secret,
        help_text="Webhook: the HMAC-SHA256 key of the X-Collabadmin-Signature header; give it to the receiver.",
    )
    email_to = models.CharField(
        max_length=500, blank=True, help_text="E-mail: the recipients' addresses, separated by commas."
    )
    alert_kinds = models.JSONField(
        default=list, blank=True, help_text="The alert kinds it wants (their codes); empty: every kind."
    )
    min_severity = models.CharField(max_length=16, choices=AlertSeverity.choices, default=AlertSeverity.WARNING)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def recipients(self) -> list[str]:
        return [address.strip() for address in self.email_to.split(",") if address.strip()]

    def clean(self) -> None:
        if self.kind == NotificationKind.WEBHOOK and not self.url:
            raise ValidationError({"url": "A webhook needs the URL to POST to."})
        if self.kind == NotificationKind.EMAIL and not self.recipients:
            raise ValidationError({"email_to": "Give at least one address."})
        unknown = set(self.alert_kinds or []) - set(AlertKind.values)
        if not isinstance(self.alert_kinds, list) or unknown:
            raise ValidationError({"alert_kinds": f"Not alert kinds: {', '.join(sorted(map(str, unknown)))}."})


class NotificationDelivery(models.Model):
    """One notification to one channel, sent at least once until ``delivered_at`` is set.

    ``delivery_id`` is the same on every attempt (the receiver de-duplicates on it).
    Pending: not delivered and ``next_attempt_at`` set; given up: not delivered and no
    next attempt (retried for 24 h first, see ``failover.services.notifications``)."""

    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="deliveries")
    alert = models.ForeignKey(
        "failover.Alert", on_delete=models.CASCADE, null=True, blank=True, related_name="deliveries"
    )
    event = models.CharField(max_length=16, choices=NotificationEvent.choices)
    delivery_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The sweep for deliveries whose task was lost reads the pending ones by due time.
            models.Index(
                fields=["next_attempt_at"], name="failover_notif_pending_idx", condition=Q(delivered_at__isnull=True)
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(alert__isnull=False) | Q(event=NotificationEvent.TEST),
                name="failover_notif_alert_unless_test",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel}: {self.get_event_display()} ({self.delivery_id})"

    @property
    def state(self) -> str:
        if self.delivered_at is not None:
            return "delivered"
        return "pending" if self.next_attempt_at is not None else "failed"
