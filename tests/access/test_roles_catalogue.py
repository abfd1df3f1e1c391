"""The roles' groups as the migration made them match the catalogue (common/roles.py)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission

from common import roles

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("role", roles.ROLES, ids=lambda role: role.key)
def test_each_role_group_carries_exactly_its_permissions(role: roles.Role) -> None:
    group = Group.objects.get(name=role.group)
    held = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}
    assert held == {permission.name for permission in role.permissions}


def test_every_catalogued_permission_exists_with_its_description() -> None:
    stored = dict(Permission.objects.filter(content_type__app_label=roles.APP_LABEL).values_list("codename", "name"))
    for permission in roles.PERMISSIONS:
        assert stored.get(permission.codename) == permission.description


def test_roles_are_cumulative() -> None:
    viewer, supervisor, administrator = (set(role.permissions) for role in roles.ROLES)
    assert viewer < supervisor < administrator
    assert administrator == set(roles.PERMISSIONS)


@pytest.mark.django_db(transaction=True)
def test_staff_of_a_release_before_roles_become_administrators_and_others_get_nothing() -> None:
    """Before roles every staff user could do everything: the upgrade keeps them able to."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("failover", "0015_failover_event_failure")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old_users = executor.loader.project_state(before).apps.get_model("auth", "User").objects
    old_users.create(username="staff-ann", is_staff=True)
    old_users.create(username="root-bob", is_staff=True, is_superuser=True)
    old_users.create(username="agent-cid")

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    users = get_user_model().objects
    assert list(users.get(username="staff-ann").groups.values_list("name", flat=True)) == ["Administrator"]
    assert users.get(username="staff-ann").has_perm(roles.SWITCH_OVER_LINKS.name)
    assert not users.get(username="root-bob").groups.exists(), "a superuser needs no group"
    assert not users.get(username="agent-cid").groups.exists()
    assert not users.get(username="agent-cid").has_perm(roles.VIEW_DESKTOP.name)


@pytest.mark.django_db(transaction=True)
def test_a_flushed_database_gets_its_role_groups_back() -> None:
    """Transactional tests flush the database after each test; Django re-creates the
    permissions then (post_migrate), and the product its role groups."""
    from django.core.management import call_command

    call_command("flush", interactive=False, verbosity=0)
    assert set(Group.objects.values_list("name", flat=True)) >= {role.group for role in roles.ROLES}
    test_each_role_group_carries_exactly_its_permissions(roles.ADMINISTRATOR)
