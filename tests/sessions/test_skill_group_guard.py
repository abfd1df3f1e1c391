"""A session without a skill group goes to any agent, so "no skill group" must only ever
mean that the caller asked for any agent (issue 15, point 2): the database refuses an open
session that has lost its skill group, a skill group still asked for cannot be deleted,
and the route decision refuses such a session for every agent."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone

from configsync.services.local_config import skill_group_delete
from failover.choices import PeerKind
from sessions.choices import AgentState, EndReason, SessionState
from sessions.models import CollaborationSession
from sessions.services.requests import session_request
from sessions.services.routes import RouteOutcome, agent_can_take, session_route_many
from tests.factories import AgentFactory, PeerFactory, SessionFactory, SkillGroupFactory, peer_mark_connected

pytestmark = pytest.mark.django_db


def test_an_open_session_names_its_skill_group_or_says_any_agent_will_do(server):
    billing = SkillGroupFactory(server=server, name="Billing")
    with pytest.raises(IntegrityError), transaction.atomic():
        CollaborationSession.objects.create(server=server, caller_name="Lost", queued_at=timezone.now())
    with pytest.raises(IntegrityError), transaction.atomic():
        CollaborationSession.objects.create(
            server=server, caller_name="Both", skill_group=billing, any_skill_group=True, queued_at=timezone.now()
        )
    queued = SessionFactory(server=server, skill_group=billing)
    # Losing the skill group later is refused too, not only at creation.
    with pytest.raises(IntegrityError), transaction.atomic():
        CollaborationSession.objects.filter(pk=queued.pk).update(skill_group=None)


def test_a_caller_who_names_no_department_asks_for_any_agent(server):
    SkillGroupFactory(server=server, name="Billing")
    anyone = session_request(caller_name="Ann", actor="caller:web")
    billing = session_request(caller_name="Bill", skill_group_name="Billing", actor="caller:web")
    assert (anyone.skill_group, anyone.any_skill_group) == (None, True)
    assert (billing.skill_group.name, billing.any_skill_group) == ("Billing", False)


def test_a_skill_group_still_asked_for_cannot_be_deleted_but_its_history_does_not_hold_it(server):
    billing = SkillGroupFactory(server=server, icm_id="5003", name="Billing")
    queued = SessionFactory(server=server, skill_group=billing)
    ended = SessionFactory(
        server=server,
        skill_group=billing,
        state=SessionState.ENDED,
        end_reason=EndReason.CALLER_LEFT,
        ended_at=timezone.now(),
    )

    with pytest.raises(ProtectedError):
        billing.delete()
    # Verify and Sync deletes through this service: a refused row, not a crash.
    with pytest.raises(ValidationError, match="asked for by 1 open session"):
        skill_group_delete(server_id=server.pk, icm_id="5003")
    queued.refresh_from_db()
    assert queued.skill_group == billing

    CollaborationSession.objects.filter(pk=queued.pk).update(
        state=SessionState.ENDED, end_reason=EndReason.CALLER_LEFT, ended_at=timezone.now()
    )
    assert skill_group_delete(server_id=server.pk, icm_id="5003") is True
    ended.refresh_from_db()
    assert ended.skill_group is None


def test_the_route_decision_refuses_any_agent_outside_the_sessions_skill_group(server):
    sales, billing = SkillGroupFactory(server=server, name="Sales"), SkillGroupFactory(server=server, name="Billing")
    seller = AgentFactory(server=server, icm_id="sales-1", state=AgentState.READY, max_sessions=3)
    seller.skill_groups.set([sales])
    peer_mark_connected(PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER), epoch=1)
    billing_caller = SessionFactory(server=server, skill_group=billing)
    any_caller = SessionFactory(server=server)

    assert not agent_can_take(seller, billing_caller)
    assert agent_can_take(seller, any_caller)
    outcomes = session_route_many(
        server_id=server.pk, routes=[(billing_caller.pk, "sales-1"), (any_caller.pk, "sales-1")], epoch=1
    )
    assert outcomes == [RouteOutcome.AGENT_UNAVAILABLE, RouteOutcome.ROUTED]
