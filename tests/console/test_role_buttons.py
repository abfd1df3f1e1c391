"""A button or form a user's role does not allow is not shown (the action refuses it anyway:
tests/security/test_role_permissions.py)."""

from __future__ import annotations

import pytest
from django.test import Client

from common import roles
from tests.factories import role_user

pytestmark = pytest.mark.django_db

ACTIONS = {
    "/switchover/": roles.SWITCH_OVER_LINKS,
    "/maintenance/": roles.SET_PEER_MAINTENANCE,
    "/drain/": roles.DRAIN_SERVERS,
    "/silence/": roles.HANDLE_ALERTS,
}


def overview_of(role: roles.Role) -> str:
    client = Client()
    client.force_login(role_user(role, username=f"{role.key}-buttons"))
    page = client.get("/")
    assert page.status_code == 200
    return page.content.decode()


@pytest.mark.parametrize("role", roles.ROLES, ids=lambda role: role.key)
def test_the_overview_shows_only_the_actions_of_the_role(mb_pair, role: roles.Role) -> None:
    page = overview_of(role)

    for fragment, permission in ACTIONS.items():
        shown = 'data-action="/console/' in page and fragment in page
        assert shown == (permission in role.permissions), fragment


def test_configuration_is_linked_for_superusers_only(admin_client, mb_pair) -> None:
    assert 'href="/admin/"' in admin_client.get("/").content.decode()
    assert 'href="/admin/"' not in overview_of(roles.ADMINISTRATOR)


@pytest.mark.parametrize(
    ("page", "action", "role_allowed"),
    [
        ("/console/wizards/", "/console/wizards/start/", roles.ADMINISTRATOR),
        ("/console/sync/", "/console/sync/verify/", roles.ADMINISTRATOR),
    ],
)
def test_wizard_and_verify_forms_only_for_the_roles_that_run_them(
    server, page: str, action: str, role_allowed: roles.Role
) -> None:
    for role in roles.ROLES:
        client = Client()
        client.force_login(role_user(role, username=f"{role.key}-forms"))
        html = client.get(page).content.decode()
        assert (f'action="{action}"' in html) == (role == role_allowed), role.key
        assert ("data-not-allowed" in html) == (role != role_allowed), role.key
