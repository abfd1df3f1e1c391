"""Adding, changing and deleting notification channels, with a reason, audited.

The audit history keeps the before and after of every changed field but the webhook's
``secret``: it signs the deliveries, and the audit history is read by more people than
those who may sign; only that it changed is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from common.actors import Actor
from failover.choices import AuditAction
from failover.models import NotificationChannel
from failover.services.configuration import config_apply, config_delete, require_reason

CHANNEL_FIELDS = ("name", "kind", "enabled", "url", "secret", "email_to", "alert_kinds", "min_severity")
SECRET_FIELDS = ("secret",)


@transaction.atomic
def notification_channel_save(
    *, channel_id: int | None, actor: Actor, reason: str, changes: Mapping[str, Any]
) -> NotificationChannel:
    """Add a channel (``channel_id`` ``None``) or change it; audited without the secret."""
    reason = require_reason(reason)
    if unknown := sorted(set(changes) - set(CHANNEL_FIELDS)):
        raise ValidationError({name: "Not a channel field." for name in unknown})
    if channel_id is None:
        channel, action = NotificationChannel(), AuditAction.NOTIFICATION_CHANNEL_CREATED
    else:
        channel = NotificationChannel.objects.select_for_update().get(pk=channel_id)
        action = AuditAction.NOTIFICATION_CHANNEL_CHANGED
    config_apply(obj=channel, changes=changes, actor=actor, reason=reason, action=action, secret_fields=SECRET_FIELDS)
    return channel


@transaction.atomic
def notification_channel_delete(*, channel_id: int, actor: Actor, reason: str) -> None:
    """Delete a channel and its deliveries, audited with its settings (not its secret)."""
    reason = require_reason(reason)
    channel = NotificationChannel.objects.select_for_update().get(pk=channel_id)
    config_delete(
        obj=channel,
        fields=CHANNEL_FIELDS,
        actor=actor,
        reason=reason,
        action=AuditAction.NOTIFICATION_CHANNEL_DELETED,
        secret_fields=SECRET_FIELDS,
    )
