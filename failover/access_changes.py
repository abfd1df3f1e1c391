"""Telling open desktops that a user's access changed.

When a user is saved or deleted (made non-staff, deactivated, removed), every WebSocket of
that user re-checks its access at once (``common.live.access_changed``), instead of
every socket querying the database for every event it forwards. Changes that bypass
``save()`` (a queryset ``update()``, SQL) are caught by the heartbeat's re-check within
``LIVE_HEARTBEAT_SECONDS``. Connected in ``FailoverConfig.ready``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save

from common import live


def _changed(sender: Any, instance: Any, **_: object) -> None:
    live.access_changed(instance.pk)


def connect() -> None:
    user_model = get_user_model()
    post_save.connect(_changed, sender=user_model, dispatch_uid="failover.access_changes.saved")
    post_delete.connect(_changed, sender=user_model, dispatch_uid="failover.access_changes.deleted")
