"""The open sockets' access re-checks answered together (common/batched_checks.py,
``common.permissions.users_who_may``): the same answer as ``may`` for every kind of user,
and one query for many sockets' questions."""

from __future__ import annotations

import asyncio

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from common.batched_checks import BatchedCheck
from common.permissions import may, users_who_may
from common.roles import ADMINISTRATOR, END_SESSIONS, ROLES, SUPERVISOR, VIEW_DESKTOP, VIEWER
from tests.factories import StaffFactory, UserFactory, role_user

pytestmark = pytest.mark.django_db


def every_kind_of_user() -> list:
    direct = UserFactory(username="direct")
    app_label, codename = VIEW_DESKTOP.name.split(".")
    direct.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label=app_label))
    own_group = Group.objects.create(name="wall-display")
    own_group.permissions.add(Permission.objects.get(codename=codename, content_type__app_label=app_label))
    grouped = UserFactory(username="grouped")
    grouped.groups.add(own_group)
    return [
        StaffFactory(username="super"),
        StaffFactory(username="inactive-super", is_active=False),
        *(role_user(role, username=role.group) for role in ROLES),
        role_user(VIEWER, username="inactive-viewer", is_active=False),
        UserFactory(username="nobody", is_staff=True),  # staff alone grants nothing
        direct,
        grouped,
    ]


@pytest.mark.parametrize(
    ("permission", "holders"),
    [
        (VIEW_DESKTOP, {"super", VIEWER.group, SUPERVISOR.group, ADMINISTRATOR.group, "direct", "grouped"}),
        (END_SESSIONS, {"super", SUPERVISOR.group, ADMINISTRATOR.group}),
    ],
)
def test_users_who_may_agrees_with_may_for_every_kind_of_user(permission, holders):
    users = every_kind_of_user()

    allowed = users_who_may(permission, [user.pk for user in users])

    expected = {user.pk for user in users if may(type(user).objects.get(pk=user.pk), permission)}
    assert allowed == expected
    assert {user.username for user in users if user.pk in allowed} == holders


@pytest.mark.django_db(transaction=True)
def test_many_sockets_questions_in_one_window_are_one_query():
    users = every_kind_of_user()
    asked: list[frozenset[int]] = []

    def answer_many(user_ids: frozenset[int]) -> set[int]:
        asked.append(user_ids)
        with CaptureQueriesContext(connection) as queries:
            found = users_who_may(VIEW_DESKTOP, user_ids)
        assert len(queries) == 1
        return found

    check = BatchedCheck(answer_many, window=0.05)

    async def every_socket_asks() -> list[bool]:
        return await asyncio.gather(*(check(user.pk) for user in users))

    answers = asyncio.run(every_socket_asks())

    assert asked == [frozenset(user.pk for user in users)]  # one batch, one thread hop
    assert answers == [may(type(user).objects.get(pk=user.pk), VIEW_DESKTOP) for user in users]


@pytest.mark.django_db(transaction=True)
def test_a_failed_batch_fails_every_waiter_and_the_next_batch_asks_again():
    calls: list[frozenset[int]] = []

    def flaky(user_ids: frozenset[int]) -> set[int]:
        calls.append(user_ids)
        if len(calls) == 1:
            raise ConnectionError("database away")
        return set(user_ids)

    check = BatchedCheck(flaky, window=0.01)

    async def scenario() -> tuple[list, bool]:
        first = await asyncio.gather(check(1), check(2), return_exceptions=True)
        return first, await check(3)

    first, later = asyncio.run(scenario())

    assert [type(answer) for answer in first] == [ConnectionError, ConnectionError]
    assert later is True
    assert calls == [frozenset({1, 2}), frozenset({3})]
