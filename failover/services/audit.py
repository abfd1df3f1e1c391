"""Writing the audit history."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import models

from failover.choices import AuditAction
from failover.models import AuditEntry

# What the audit history keeps of a reason (``AuditEntry.reason``).
REASON_MAX = AuditEntry._meta.get_field("reason").max_length


def reason_too_long(reason: str) -> str | None:
    """The refusal for a reason longer than the audit keeps, else ``None``.

    A person's reason is refused, never cut: a cut reason is a different reason in the
    history, and nobody is told. (Only text the system writes itself, such as a peer's
    error, is shortened by :func:`audit_entry`.)
    """
    if len(reason) <= REASON_MAX:
        return None
    return f"The reason is {len(reason)} characters long; at most {REASON_MAX} are kept. Shorten it."


def check_reason(reason: str, *, field: str = "reason") -> str:
    """``reason`` stripped; ``ValidationError`` on ``field`` when it is longer than the audit keeps."""
    reason = reason.strip()
    if refusal := reason_too_long(reason):
        raise ValidationError({field: refusal})
    return reason


def actor_label(actor: AbstractBaseUser | str | None) -> str:
    """``user:NAME`` for a person, the given ``system:...`` label for automation."""
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    return f"user:{actor.get_username()}"


def audit_entry(
    *,
    actor: AbstractBaseUser | str | None,
    action: AuditAction,
    target: models.Model,
    reason: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry:
    """One entry, not yet saved: for :func:`audit_record_many`."""
    return AuditEntry(
        actor=actor if isinstance(actor, AbstractBaseUser) else None,
        actor_name=actor_label(actor),
        action=action,
        object_type=target._meta.label_lower,
        object_id=str(target.pk),
        object_repr=str(target)[:200],
        reason=reason[:REASON_MAX],
        before=before or {},
        after=after or {},
    )


def audit_record(
    *, actor: AbstractBaseUser | str | None, action: AuditAction, target: models.Model, **details: Any
) -> AuditEntry:
    """Append one entry to the audit history, in the caller's transaction; ``details`` are
    :func:`audit_entry`'s ``reason``, ``before`` and ``after``.

    Call it inside the service's ``transaction.atomic`` so the entry exists exactly when
    the change it describes was committed.
    """
    entry = audit_entry(actor=actor, action=action, target=target, **details)
    entry.save()
    return entry


def audit_record_many(entries: Iterable[AuditEntry]) -> None:
    """Append entries made by :func:`audit_entry` in one insert, in the caller's transaction
    (a service that changes many rows at once, such as a batch of routes)."""
    AuditEntry.objects.bulk_create(entries)
