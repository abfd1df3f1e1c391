"""A database created by the previous release migrates to this one and keeps its data.

The previous release's last migrations are applied to an empty test database, rows are
written through the models as they were then (historical models, not today's), and the
database is migrated to today's leaf migrations; every row is still there, as today's
models read it, with the new columns at their documented defaults."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from failover.models import FailoverEvent, Link, Peer, Policy, Server
from sessions.choices import EndReason, SessionState
from sessions.models import Agent, CollaborationSession, SkillGroup

# The leaf migrations of the previous release (what a database created by it has applied).
PREVIOUS_RELEASE = [
    ("failover", "0004_policy_max_transit_attempts"),
    ("collab_sessions", "0003_session_transit_timeouts"),
]


def _migrate(targets: list[tuple[str, str]]):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def _leaves() -> list[tuple[str, str]]:
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def _write_previous_release_rows(old) -> dict:
    """An installation as the previous release left it: a server with its Media Blender
    pair and link, an agent with a skill group, a queued and an ended session, an event."""
    now = timezone.now()
    server = old.get_model("failover", "Server").objects.create(name="routing-a", base_url="http://127.0.0.1:9")
    link = old.get_model("failover", "Link").objects.create(server=server, kind="media_blender")
    Peer_ = old.get_model("failover", "Peer")
    for priority, name in ((1, "mb-1"), (2, "mb-2")):
        Peer_.objects.create(server=server, kind="media_blender", name=name, port=7100 + priority, priority=priority)
    old.get_model("failover", "Policy").objects.create(pk=1, probe_interval_ms=700)
    old.get_model("failover", "FailoverEvent").objects.create(
        server=server, link=link, kind="manual", reason="before the upgrade", detected_at=now
    )
    user = old.get_model("auth", "User").objects.create(username="ann")
    group = old.get_model("collab_sessions", "SkillGroup").objects.create(server=server, icm_id="SG-1", name="Sales")
    agent = old.get_model("collab_sessions", "Agent").objects.create(user=user, server=server, icm_id="ann")
    agent.skill_groups.add(group)
    Session = old.get_model("collab_sessions", "CollaborationSession")
    queued = Session.objects.create(server=server, skill_group=group, caller_name="Queued caller", queued_at=now)
    ended = Session.objects.create(
        server=server,
        skill_group=group,
        caller_name="Ended caller",
        queued_at=now,
        state="ended",
        ended_at=now,
        end_reason="caller_left",
    )
    return {"server": server.pk, "queued": queued.pk, "ended": ended.pk, "agent": agent.pk}


@pytest.mark.django_db(transaction=True)
def test_a_database_of_the_previous_release_migrates_and_keeps_its_data():
    rows = _write_previous_release_rows(_migrate(PREVIOUS_RELEASE))
    _migrate(_leaves())

    server = Server.objects.get(pk=rows["server"])
    assert server.name == "routing-a"
    assert sorted(Peer.objects.filter(server=server).values_list("name", flat=True)) == ["mb-1", "mb-2"]
    assert Link.objects.get(server=server).kind == "media_blender"
    policy = Policy.objects.get(pk=1)
    assert policy.probe_interval_ms == 700, "a setting the administrator chose is kept"
    assert policy.agent_max_sessions == Policy._meta.get_field("agent_max_sessions").default
    assert FailoverEvent.objects.get(server=server).reason == "before the upgrade"
    agent = Agent.objects.get(pk=rows["agent"])
    assert (agent.user.username, [g.name for g in agent.skill_groups.all()]) == ("ann", ["Sales"])
    queued = CollaborationSession.objects.get(pk=rows["queued"])
    assert (queued.state, queued.skill_group.name, queued.any_skill_group) == (SessionState.QUEUED, "Sales", False)
    ended = CollaborationSession.objects.get(pk=rows["ended"])
    assert (ended.state, ended.end_reason, ended.end_note) == (SessionState.ENDED, EndReason.CALLER_LEFT, "")
    assert SkillGroup.objects.count() == 1
    assert get_user_model().objects.filter(username="ann").exists()
