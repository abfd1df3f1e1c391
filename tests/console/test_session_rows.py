"""The sessions page's rows are rendered once per change of what they show
(console/session_rows.py), and a kept row is never shown for something it does not show.

The changes are made with ``QuerySet.update()`` on purpose: no save(), no signal, no event;
the only way a row can know is by what the page's query reads.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.test import Client
from django.utils import timezone

from common import roles
from console.live_fragments import shared_renders
from console.session_rows import TEMPLATE, with_rows
from failover.models import Server
from sessions.choices import EndReason
from sessions.models import Agent, CollaborationSession, SkillGroup
from tests.console.kept_pieces import client_of, counting_renders
from tests.console.session_rows import ended_session, queued_session
from tests.factories import AgentFactory, ServerFactory, StaffFactory, role_user

pytestmark = pytest.mark.django_db

SESSIONS = "/console/sessions/?fragment=1"


@pytest.fixture(autouse=True)
def no_rows_kept():
    caches["session_rows"].clear()


@pytest.fixture
def rows_rendered():
    """How many session rows were rendered (not taken from the cache) so far."""
    with counting_renders(TEMPLATE) as rendered:
        yield rendered


def sessions_fragment(client: Client) -> str:
    shared_renders.clear()  # a render, not one shared with the previous request
    page = client.get(SESSIONS)
    assert page.status_code == 200
    return page.content.decode()


def row_of(page: str, session: CollaborationSession) -> str:
    start = page.index("<tr", page.index(f'id="session-{session.pk}"') - 60)
    return page[start : page.index("</tr>", start)]


@pytest.fixture
def installation(db):
    """Three sessions on one server: one waiting for a skill group, one ended by an
    administrator after an agent had it, one ended by its caller."""
    server = ServerFactory(name="routing-a")
    group = SkillGroup.objects.create(server=server, icm_id="SG1", name="Billing")
    agent = AgentFactory(server=server, user__first_name="Ann", user__last_name="Agent")
    admin = StaffFactory(username="olivia")
    return {
        "waiting": queued_session(server, waited=30, skill_group=group, topic="Invoice"),
        "ended": ended_session(server, agent=agent, ended_by=admin, end_reason=EndReason.ADMIN_ENDED),
        "left": ended_session(server),
        "server": server,
        "group": group,
        "agent": agent,
        "admin": admin,
    }


CHANGES = {
    "the session's phone note": (
        "waiting",
        lambda w: CollaborationSession.objects.filter(pk=w["waiting"].pk).update(
            phone_leg="unknown", phone_note="No answer from the Media Blender"
        ),
        "No answer from the Media Blender",
    ),
    "the server's name": (
        "waiting",
        lambda w: Server.objects.filter(pk=w["server"].pk).update(name="routing-z"),
        "routing-z",
    ),
    "the skill group's name": (
        "waiting",
        lambda w: SkillGroup.objects.filter(pk=w["group"].pk).update(name="Payments"),
        "Payments",
    ),
    "the agent's name": (
        "ended",
        lambda w: get_user_model().objects.filter(pk=w["agent"].user_id).update(first_name="Anne"),
        "Anne Agent",
    ),
    "who ended it": (
        "ended",
        lambda w: get_user_model().objects.filter(pk=w["admin"].pk).update(username="olivia-renamed"),
        "olivia-renamed",
    ),
    "the agent row itself": (
        "ended",
        lambda w: Agent.objects.filter(pk=w["agent"].pk).update(user=StaffFactory(first_name="Bo", last_name="B")),
        "Bo B",
    ),
}


@pytest.mark.parametrize("change", CHANGES, ids=list(CHANGES))
def test_a_change_to_what_a_row_shows_is_on_the_next_render(installation, change: str) -> None:
    which, make, shown = CHANGES[change]
    client = client_of(roles.SUPERVISOR)
    before = sessions_fragment(client)
    assert shown not in row_of(before, installation[which])

    make(installation)
    after = sessions_fragment(client)

    assert shown in row_of(after, installation[which])
    untouched = [s for name, s in installation.items() if name in ("waiting", "ended", "left") and name != which]
    changed_too = change in ("the server's name",)  # every row names the server
    for session in untouched:
        assert (row_of(after, session) == row_of(before, session)) != changed_too


def test_only_the_changed_row_is_rendered_again(installation, rows_rendered) -> None:
    client = client_of(roles.SUPERVISOR)
    sessions_fragment(client)
    assert len(rows_rendered) == 3

    CollaborationSession.objects.filter(pk=installation["left"].pk).update(phone_note="changed")
    sessions_fragment(client)
    # The changed row, and the waiting one if its "waited" ticked over to the next second.
    assert 1 <= len(rows_rendered) - 3 <= 2


def test_readers_of_different_roles_never_share_a_row(installation, rows_rendered) -> None:
    viewer, supervisor = client_of(roles.VIEWER), client_of(roles.SUPERVISOR)

    seen_by_viewer = row_of(sessions_fragment(viewer), installation["waiting"])
    seen_by_supervisor = row_of(sessions_fragment(supervisor), installation["waiting"])

    assert "End session" not in seen_by_viewer
    assert "End session" in seen_by_supervisor


def test_each_time_zone_has_its_own_row(installation) -> None:
    utc = row_of(sessions_fragment(client_of(roles.VIEWER)), installation["left"])
    tokyo = row_of(sessions_fragment(client_of(roles.VIEWER, "Asia/Tokyo")), installation["left"])

    assert "UTC" in utc
    assert "UTC" not in tokyo

    def without_times(row: str) -> str:  # and the block's name, a digest of the row's bytes
        return re.sub(r'<time[^<]*</time>| data-block="[0-9a-f]+"', "", row)

    assert without_times(utc) == without_times(tokyo)


def test_the_wait_as_written_is_part_of_what_a_row_shows(installation) -> None:
    """A waiting caller's row says how long it has waited: a later second is a new row,
    though nothing stored changed."""
    supervisor = role_user(roles.SUPERVISOR)
    session = CollaborationSession.objects.get(pk=installation["waiting"].pk)
    session.still_waiting, session.waited = True, "30 s"
    first = str(with_rows([session], supervisor)[0].row_html)
    session.waited = "31 s"
    second = str(with_rows([session], supervisor)[0].row_html)

    assert "30 s" in first
    assert "31 s" in second


def test_a_kept_row_is_the_row_rendered_now(installation) -> None:
    client = client_of(roles.SUPERVISOR)
    CollaborationSession.objects.filter(pk=installation["waiting"].pk).update(
        queued_at=timezone.now() - timedelta(hours=2)  # waited "2 h": stays the same for this test
    )
    kept = sessions_fragment(client)
    caches["session_rows"].clear()
    fresh = sessions_fragment(client)

    assert kept == fresh
