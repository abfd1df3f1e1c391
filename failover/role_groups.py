"""The roles' groups (``common/roles.py``), kept present after every ``migrate``.

The migration that introduced roles created them; this puts back a group or a
permission that went missing since (deleted by hand, or a test database flushed between
tests: a flush empties the groups, and Django then re-creates only the permissions).
It only adds: permissions an operator added to or removed from a group stay as they are,
except that a role's own catalogue permissions are restored.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db.models.signals import post_migrate

from common.roles import APP_LABEL, PERMISSIONS, ROLES


def ensure_role_groups(**_: Any) -> None:
    content_type, _created = ContentType.objects.get_or_create(app_label=APP_LABEL, model="access")
    permissions = {
        permission.codename: Permission.objects.get_or_create(
            content_type=content_type, codename=permission.codename, defaults={"name": permission.description}
        )[0]
        for permission in PERMISSIONS
    }
    for role in ROLES:
        group, _created = Group.objects.get_or_create(name=role.group)
        group.permissions.add(*(permissions[permission.codename] for permission in role.permissions))


def connect(sender: Any) -> None:
    # Once, after the failover app's own post_migrate (its permissions exist by then).
    post_migrate.connect(ensure_role_groups, sender=sender, dispatch_uid="failover.role_groups")
