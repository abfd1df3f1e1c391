"""Configuration edits of one row (a server, a peer, a notification channel, an agent's
local settings): validated, saved in the changed fields only, audited with the reason and
the before and after of exactly those fields.

The Django admin and any other configuration tool call these through the services of
each model (``topology``, ``notifications``, ``sessions.services.agent_settings``), so
an edit made anywhere leaves the same trace in the audit history.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from common.actors import Actor
from failover.choices import AuditAction
from failover.services.audit import audit_record, check_reason

# What the audit history shows for a secret: that it is there (or changed), never its value.
REDACTED = "(not recorded)"


def require_reason(reason: str) -> str:
    """The reason stripped; ``ValidationError`` on ``reason`` when it is blank or too long."""
    reason = check_reason(reason)
    if not reason:
        raise ValidationError({"reason": "Give a reason for the change; it is kept in the audit history."})
    return reason


def shown(values: Mapping[str, Any], secret_fields: Collection[str] = ()) -> dict[str, Any]:
    """``values`` as the audit history may keep them: secrets replaced by a marker."""
    return {name: REDACTED if name in secret_fields else value for name, value in values.items()}


def config_apply(
    *,
    obj: models.Model,
    changes: Mapping[str, Any],
    actor: Actor,
    reason: str,
    action: AuditAction,
    secret_fields: Collection[str] = (),
) -> list[str]:
    """Set ``changes`` on ``obj`` (new, or locked by the caller), validate, save, audit.

    A new row is saved whole; an existing one only in the fields whose value really
    changed, because the monitor and the services write runtime columns at any moment and
    a full save would put back what this caller read. Returns the changed field names
    (empty: nothing was saved nor audited).
    """
    creating = obj._state.adding
    before = {name: getattr(obj, name) for name in changes}
    for name, value in changes.items():
        setattr(obj, name, value)
    obj.full_clean()
    changed = list(changes) if creating else [name for name in changes if getattr(obj, name) != before[name]]
    if not changed:
        return []
    obj.save(update_fields=None if creating else changed)
    audit_record(
        actor=actor,
        action=action,
        target=obj,
        reason=reason,
        before={} if creating else shown({name: before[name] for name in changed}, secret_fields),
        after=shown({name: getattr(obj, name) for name in changed}, secret_fields),
    )
    return changed


def config_delete(
    *,
    obj: models.Model,
    fields: Collection[str],
    actor: Actor,
    reason: str,
    action: AuditAction,
    secret_fields: Collection[str] = (),
) -> None:
    """Delete ``obj`` (locked by the caller), audited with its ``fields`` as they were."""
    audit_record(
        actor=actor,
        action=action,
        target=obj,
        reason=reason,
        before=shown({name: getattr(obj, name) for name in fields}, secret_fields),
    )
    obj.delete()
