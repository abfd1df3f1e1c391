"""Changing the failover policy (the singleton of tunables), with a reason and an audit entry."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from common import live
from failover.choices import AuditAction
from failover.models import Policy
from failover.services.audit import audit_record, check_reason

# Everything an administrator may change: every concrete field but the key and the stamp.
EDITABLE_FIELDS: tuple[str, ...] = tuple(
    field.name for field in Policy._meta.concrete_fields if field.editable and field.name not in ("id", "updated_at")
)


@transaction.atomic
def policy_update(*, actor: AbstractBaseUser | str | None, reason: str, changes: dict[str, Any]) -> Policy:
    """Apply ``changes`` (field name -> new value) to the policy and return it.

    Refuses (Django ``ValidationError``, one message per field) a blank reason, a field
    that is not editable, and any value the model's validators reject; nothing is saved
    then. Writes one ``policy.changed`` audit entry with the before and after of the
    fields whose value actually changed, and broadcasts them after the commit. Changing
    nothing (or setting the values it already has) writes nothing.
    """
    if not reason.strip():
        raise ValidationError({"reason": "Give a reason for the policy change."})
    reason = check_reason(reason)
    unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
    if unknown:
        raise ValidationError({name: "Not an editable policy field." for name in unknown})
    Policy.current()  # creates the defaults the very first time
    # Locked so that two administrators' changes apply one after the other, each audited
    # against the values it really replaced.
    policy = Policy.objects.select_for_update().get(pk=1)
    before = {name: getattr(policy, name) for name in changes}
    for name, value in changes.items():
        setattr(policy, name, value)
    policy.full_clean()
    changed = [name for name in changes if getattr(policy, name) != before[name]]
    if not changed:
        return policy
    policy.save(update_fields=[*changed, "updated_at"])
    after = {name: getattr(policy, name) for name in changed}
    audit_record(
        actor=actor,
        action=AuditAction.POLICY_CHANGED,
        target=policy,
        reason=reason,
        before={name: before[name] for name in changed},
        after=after,
    )
    live.publish("policy.changed", {"changes": after, "reason": reason})
    return policy
