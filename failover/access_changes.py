"""Telling open desktops that a user's access changed.

When a user is saved or deleted (deactivated, removed, made non-superuser) or its groups
or permissions change (a role taken away), every WebSocket of
that user re-checks its access at once (``common.live.access_changed``), instead of
every socket querying the database for every event it forwards. Changes that bypass
``save()`` (a queryset ``update()``, SQL) are caught by the heartbeat's re-check within
``LIVE_HEARTBEAT_SECONDS``. Every such change also moves ``common.access_epoch``, so
what a node remembers of who may see what (the live fragments' fast path) is forgotten
on every node. Connected in ``FailoverConfig.ready``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import m2m_changed, post_delete, post_save

from common import access_epoch, live


def _changed(sender: Any, instance: Any, **_: object) -> None:
    live.access_changed(instance.pk)
    access_epoch.bump_after_commit()


def _membership_changed(sender: Any, instance: Any, action: str, reverse: bool, pk_set: Any, **_: object) -> None:
    """A user's groups or permissions changed: from the user's side (``instance`` is the
    user) or from the group's or permission's (``pk_set`` holds the users' ids; a clear
    from that side gives no ids, and the heartbeat catches it)."""
    if not action.startswith("post_"):
        return
    for user_id in pk_set or () if reverse else (instance.pk,):
        live.access_changed(user_id)
    access_epoch.bump_after_commit()


def connect() -> None:
    user_model = get_user_model()
    post_save.connect(_changed, sender=user_model, dispatch_uid="failover.access_changes.saved")
    post_delete.connect(_changed, sender=user_model, dispatch_uid="failover.access_changes.deleted")
    for through in (user_model.groups.through, user_model.user_permissions.through):
        m2m_changed.connect(_membership_changed, sender=through, dispatch_uid=f"failover.access_changes.{through}")
