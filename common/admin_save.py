"""Saving from the Django admin without undoing what the product changed meanwhile."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import models


def save_fields(obj: models.Model, names: Iterable[str]) -> None:
    """Save a new row whole, an existing one only in the named (changed) fields.

    The monitor and the services write runtime columns (health, connection, epochs,
    agent state) at any moment; a full ``save()`` would write back the values this
    request read, undoing a switchover that committed in between.
    """
    if obj._state.adding:
        obj.save()
        return
    concrete = {field.name for field in obj._meta.concrete_fields}
    fields = [name for name in names if name in concrete]
    if fields:
        obj.save(update_fields=fields)
