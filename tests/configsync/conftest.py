"""Fixtures for the wizards and Verify and Sync: real Admin Workstation simulator processes.

The two AWs of a pair front one ICM (``--icm-store``, one file both processes serve), as
real ones front one ICM database; a single AW keeps its own copy (``--data``). The ICM is
seeded with this server's skill groups, so the two sides start in agreement.
Celery runs eagerly: a task sent on commit (the verify after a switchover, a launched
wizard, verify or sync) runs at once in the sending thread, as if a worker were waiting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from collabadmin.celery import app as celery_app
from failover.choices import Health, PeerConnection, PeerKind, PeerPriority
from failover.models import Link, Peer, Policy, Server
from failover.peering.client import call_sync
from sessions.models import SkillGroup
from tests.factories import PeerFactory, SkillGroupFactory, peer_mark_connected
from tests.peering.conftest import PeerProcess, start_peer  # noqa: F401  (fixture)

GROUPS = {"sales": "Sales", "support": "Support"}


@pytest.fixture(autouse=True)
def celery_eager() -> Iterator[None]:
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


def aw_call(process: PeerProcess, op: str, **args: Any) -> dict[str, Any]:
    """Ask a simulator directly (test equipment, like ``ctl``)."""
    return call_sync(process.host, process.port, op, timeout=5, **args)


def icm_agents(process: PeerProcess) -> dict[str, dict[str, Any]]:
    return {a["agent_id"]: a for a in aw_call(process, "get_config")["agents"]}


@pytest.fixture
def groups(server: Server) -> dict[str, SkillGroup]:
    return {icm_id: SkillGroupFactory(server=server, icm_id=icm_id, name=name) for icm_id, name in GROUPS.items()}


@pytest.fixture
def icm_store(tmp_path: Path) -> Path:
    """The one ICM a pair of AWs fronts."""
    return tmp_path / "icm.json"


@pytest.fixture
def start_aw(start_peer: Callable[..., PeerProcess], tmp_path: Path) -> Callable[..., PeerProcess]:  # noqa: F811
    """``start_aw(name, icm_store=None, *extra)``: an AW process whose ICM has this server's
    skill groups: its own data file, or the ICM store given (shared with the other AW)."""

    def start(name: str, icm_store: Path | None = None, *extra: str) -> PeerProcess:
        where = ["--icm-store", str(icm_store)] if icm_store else ["--data", str(tmp_path / f"{name}.json")]
        process = start_peer("admin-workstation", "--name", name, *where, *extra)
        known = {g["skill_group_id"] for g in aw_call(process, "list_skill_groups")["skill_groups"]}
        for icm_id, group_name in GROUPS.items():
            if icm_id not in known:  # a shared ICM is seeded by the first AW only
                aw_call(process, "create_skill_group", skill_group_id=icm_id, name=group_name)
        return process

    return start


@pytest.fixture
def fast_policy(db) -> Policy:
    """Quick probes for the monitor, with a generous time-out and fall (a busy machine is not a failure)."""
    policy = Policy.current()
    policy.probe_interval_ms, policy.probe_timeout_ms, policy.rise, policy.fall = 200, 1000, 2, 3
    policy.save()
    return policy


@pytest.fixture
def aw_pair(server: Server, groups, start_aw, icm_store, fast_policy) -> tuple[Link, dict[str, PeerProcess]]:
    """Two real AW processes fronting one ICM as the server's pair (not yet connected: start a monitor)."""
    processes = {name: start_aw(name, icm_store) for name in ("aw-1", "aw-2")}
    for priority, name in enumerate(["aw-1", "aw-2"], start=PeerPriority.PRIMARY):
        PeerFactory(
            server=server, kind=PeerKind.ADMIN_WORKSTATION, priority=priority, name=name, port=processes[name].port
        )
    return Link.objects.get(server=server, kind=PeerKind.ADMIN_WORKSTATION), processes


@pytest.fixture
def connected_aw(server: Server, groups, start_aw) -> PeerProcess:
    """One real AW process as the server's connected AW (epoch 1), no monitor."""
    process = start_aw("aw-1")
    peer = PeerFactory(
        server=server, kind=PeerKind.ADMIN_WORKSTATION, priority=PeerPriority.PRIMARY, name="aw-1", port=process.port
    )
    Peer.objects.filter(pk=peer.pk).update(health=Health.UP)
    peer_mark_connected(peer, epoch=1)
    return process


def connected_peer(link: Link) -> Peer | None:
    return link.peers().filter(connection=PeerConnection.CONNECTED).first()
