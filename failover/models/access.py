"""The anchor of the product's own permissions (catalogue: ``common/roles.py``).

Django keeps permissions per model; this model has no table and no rows, it only
carries them: ``failover.view_desktop``, ``failover.end_sessions``…
"""

from __future__ import annotations

from django.db import models

from common.roles import PERMISSIONS


class Access(models.Model):
    class Meta:
        managed = False
        default_permissions = ()
        permissions = [(permission.codename, permission.description) for permission in PERMISSIONS]

    def __str__(self) -> str:
        return "access"
