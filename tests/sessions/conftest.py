"""Fixtures for the sessions tests: skill groups, ready agents, real Media Blender processes.

Celery runs eagerly here: a task sent on commit runs at once in the committing thread, as
if a worker were waiting. In tests that are not ``transaction=True`` nothing commits, so
nothing runs by itself and the test calls the services (or ``task.apply()``) explicitly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from collabadmin.celery import app as celery_app
from failover.choices import Health, PeerConnection, PeerKind, PeerPriority
from failover.models import Link, Peer, Policy, Server
from failover.peering.client import call_sync
from sessions.models import Agent, SkillGroup
from sessions.services.lifecycle import agent_login, agent_set_ready
from tests.factories import AgentFactory, PeerFactory, SkillGroupFactory, peer_mark_connected
from tests.peering.conftest import PeerProcess, start_peer  # noqa: F401  (fixture)
from tests.waiting import wait_until  # noqa: F401  (re-exported for the session tests)


@pytest.fixture(autouse=True)
def celery_eager() -> Iterator[None]:
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


def mb_call(process: PeerProcess, op: str, **args: Any) -> dict[str, Any]:
    """Ask a simulator directly (test equipment, like ``ctl``)."""
    return call_sync(process.host, process.port, op, timeout=5, **args)


def mb_agents(process: PeerProcess) -> dict[str, dict[str, Any]]:
    return {a["agent_id"]: a for a in mb_call(process, "list_agents")["agents"]}


def mb_agent_state(process: PeerProcess, agent_id: str) -> str | None:
    """The agent's state at the Media Blender, None while it is not registered there (a
    condition to wait on: registration at a new MB follows its switchover)."""
    return mb_agents(process).get(agent_id, {}).get("state")


def mb_routes(process: PeerProcess) -> list[dict[str, Any]]:
    return mb_call(process, "list_routes")["routes"]


@pytest.fixture
def groups(server: Server) -> dict[str, SkillGroup]:
    """Sales, Support and Billing skill groups of ``server``."""
    return {
        name: SkillGroupFactory(server=server, name=name, icm_id=f"SG-{name.lower()}")
        for name in ("Sales", "Support", "Billing")
    }


@pytest.fixture
def make_agent(server: Server, groups: dict[str, SkillGroup]) -> Callable[..., Agent]:
    """``make_agent(icm_id, *group_names, max_sessions=1, ready=True)``: an agent of
    ``server``, logged in (and ready) through the services, as from its desktop."""

    def make(icm_id: str, *group_names: str, max_sessions: int = 1, ready: bool = True) -> Agent:
        agent = AgentFactory(server=server, icm_id=icm_id, user__username=icm_id, max_sessions=max_sessions)
        agent.skill_groups.set([groups[name] for name in group_names])
        agent_login(agent_id=agent.pk, actor=agent.user)
        if ready:
            agent_set_ready(agent_id=agent.pk, ready=True, actor=agent.user)
        agent.refresh_from_db()
        return agent

    return make


@pytest.fixture
def media_blender(server: Server, start_peer: Callable[..., PeerProcess]) -> tuple[PeerProcess, Peer]:  # noqa: F811
    """One real Media Blender process as the server's connected MB (epoch 1), the other
    peer of the pair configured but not running. No monitor: events are not delivered."""
    process = start_peer("media-blender", "--name", "mb-1")
    peer = PeerFactory(
        server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.PRIMARY, name="mb-1", port=process.port
    )
    Peer.objects.filter(pk=peer.pk).update(health=Health.UP)
    PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.SECONDARY, name="mb-2")
    return process, peer_mark_connected(peer, epoch=1)


@pytest.fixture
def fast_policy(db) -> Policy:
    """Quick probes for the monitor (generous time-out and fall: a busy machine is not a
    failure) and a short transit timeout."""
    policy = Policy.current()
    policy.probe_interval_ms, policy.probe_timeout_ms, policy.rise, policy.fall = 200, 1000, 2, 3
    policy.transit_timeout_seconds = 2
    policy.save()
    return policy


@pytest.fixture
def simulated_pair(server: Server, start_peer: Callable[..., PeerProcess], fast_policy: Policy):  # noqa: F811
    """Two real Media Blender processes as the server's pair (not yet connected: start a monitor)."""
    processes = {name: start_peer("media-blender", "--name", name) for name in ("mb-1", "mb-2")}
    for priority, name in enumerate(["mb-1", "mb-2"], start=PeerPriority.PRIMARY):
        PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=priority, name=name, port=processes[name].port)
    return Link.objects.get(server=server, kind=PeerKind.MEDIA_BLENDER), processes


def connected_peer(link: Link) -> Peer | None:
    return link.peers().filter(connection=PeerConnection.CONNECTED).first()
