"""The ICM Admin Workstation simulator: CRUD, errors, versioning and crash-safe persistence,
alone (its own copy, ``--data``) and as a pair fronting one ICM (``--icm-store``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failover.peering.admin_workstation import AdminWorkstation
from failover.peering.client import PeerConnection, PeerError, PeerUnavailable
from failover.peering.icm_store import IcmConfig, load_config

from .conftest import REPO_ROOT, peer_env


async def _seed(conn: PeerConnection) -> None:
    await conn.call("create_skill_group", skill_group_id="sales", name="Sales")
    await conn.call("create_skill_group", skill_group_id="support", name="Support")
    await conn.call("create_agent", agent_id="ann", name="Ann", skill_groups=["sales"])
    await conn.call("create_agent", agent_id="bob", name="Bob", enabled=False)
    await conn.call("add_membership", agent_id="bob", skill_group_id="support")
    await conn.call("update_agent", agent_id="ann", name="Ann Smith")


def test_configuration_survives_a_sigkill_and_restart_with_an_intact_data_file(start_peer, tmp_path, run):
    data = tmp_path / "aw.json"
    aw = start_peer("admin-workstation", "--data", str(data))

    async def change_then_read() -> dict[str, Any]:
        async with await PeerConnection.open(aw.host, aw.port, expect_kind="admin-workstation") as conn:
            await _seed(conn)
            return await conn.call("get_config")

    before = run(change_then_read())
    aw.kill()

    assert json.loads(data.read_text())["config_version"] == 6  # parseable: no torn write
    restarted = start_peer("admin-workstation", "--data", str(data))
    after = run(_get_config(restarted.host, restarted.port))
    assert after == before
    assert after["config_version"] == 6
    assert after["agents"] == [
        {"agent_id": "ann", "name": "Ann Smith", "enabled": True, "skill_groups": ["sales"]},
        {"agent_id": "bob", "name": "Bob", "enabled": False, "skill_groups": ["support"]},
    ]


async def _get_config(host: str, port: int) -> dict[str, Any]:
    async with await PeerConnection.open(host, port) as conn:
        return await conn.call("get_config")


def test_every_acknowledged_change_survives_a_sigkill_in_the_middle_of_a_burst(start_peer, tmp_path, run):
    data = tmp_path / "aw.json"
    aw = start_peer("admin-workstation", "--data", str(data))
    acknowledged: list[str] = []

    async def burst() -> None:
        enough = asyncio.Event()
        async with await PeerConnection.open(aw.host, aw.port) as conn:

            async def create(group_id: str) -> None:
                await conn.call("create_skill_group", skill_group_id=group_id, name=group_id, timeout=10)
                acknowledged.append(group_id)
                if len(acknowledged) >= 20:
                    enough.set()

            tasks = [asyncio.create_task(create(f"sg{i:03}")) for i in range(300)]
            await asyncio.wait_for(enough.wait(), 10)
            aw.process.kill()  # while most requests are still in flight
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(r is None or isinstance(r, PeerUnavailable) for r in results)

    run(burst())
    aw.process.wait(timeout=5)

    restarted = start_peer("admin-workstation", "--data", str(data))
    config = run(_get_config(restarted.host, restarted.port))
    stored = {g["skill_group_id"] for g in config["skill_groups"]}
    assert set(acknowledged) <= stored
    assert config["config_version"] == len(stored)


@pytest.mark.parametrize("option", ["--data", "--icm-store"])
def test_a_corrupt_data_file_stops_the_simulator_from_starting_and_is_left_untouched(tmp_path, option):
    data = tmp_path / "aw.json"
    data.write_text('{"format": 1, "config_version": 3, "agents": [')

    result = subprocess.run(
        [sys.executable, "-m", "failover.peering", "admin-workstation", "--port", "0", option, str(data)],
        cwd=REPO_ROOT,
        env=peer_env(),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )

    assert result.returncode == 1
    assert "not a valid AW data file" in result.stderr
    assert "refusing to start" in result.stderr
    assert result.stdout == ""
    assert data.read_text() == '{"format": 1, "config_version": 3, "agents": ['


def test_an_aw_has_its_own_data_file_or_the_shared_icm_store_not_both(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "failover.peering", "admin-workstation", "--port", "0"]
        + ["--data", str(tmp_path / "aw.json"), "--icm-store", str(tmp_path / "icm.json")],
        cwd=REPO_ROOT,
        env=peer_env(),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )

    assert result.returncode == 2
    assert "not allowed with argument" in result.stderr
    assert not (tmp_path / "icm.json").exists()


# -- a pair of AWs fronting one ICM (--icm-store) ------------------------------------------


def test_two_aws_on_one_icm_store_serve_one_icm_and_lose_no_concurrent_change(start_peer, tmp_path, run):
    store = tmp_path / "icm.json"
    one = start_peer("admin-workstation", "--name", "aw-1", "--icm-store", str(store))
    two = start_peer("admin-workstation", "--name", "aw-2", "--icm-store", str(store))

    async def scenario() -> tuple[list[int], dict[str, Any]]:
        async with contextlib.AsyncExitStack() as stack:
            first = await stack.enter_async_context(await PeerConnection.open(one.host, one.port))
            second = await stack.enter_async_context(await PeerConnection.open(two.host, two.port))
            await _seed(first)  # six changes, all through aw-1
            assert await second.call("get_config") == await first.call("get_config")
            # A compare-and-set through one AW sees the change just made through the other.
            await second.call("create_agent", agent_id="cy", name="Cy", expected_version=6)
            with pytest.raises(PeerError) as stale:
                await first.call("delete_agent", agent_id="cy", expected_version=6)
            assert stale.value.code == "version_mismatch"
            replies = await asyncio.gather(
                *(
                    (first, second)[i % 2].call(
                        "create_skill_group", skill_group_id=f"sg{i:03}", name=f"G{i}", timeout=15
                    )
                    for i in range(100)
                )
            )
            return [reply["config_version"] for reply in replies], await first.call("get_config")

    versions, config = run(scenario())

    # Each change, through either AW, got a version of its own: none overwrote another.
    assert sorted(versions) == list(range(8, 108))
    assert config["config_version"] == 107
    assert len(config["skill_groups"]) == 102
    assert [a["agent_id"] for a in config["agents"]] == ["ann", "bob", "cy"]
    assert json.loads(store.read_text())["config_version"] == 107


def test_an_aw_killed_in_the_middle_of_changes_leaves_the_other_serving_every_acknowledged_one(
    start_peer, tmp_path, run
):
    store = tmp_path / "icm.json"
    one = start_peer("admin-workstation", "--name", "aw-1", "--icm-store", str(store))
    two = start_peer("admin-workstation", "--name", "aw-2", "--icm-store", str(store))
    acknowledged: list[str] = []

    async def burst_then_carry_on() -> dict[str, Any]:
        enough = asyncio.Event()
        async with await PeerConnection.open(one.host, one.port) as conn:

            async def create(group_id: str) -> None:
                await conn.call("create_skill_group", skill_group_id=group_id, name=group_id, timeout=10)
                acknowledged.append(group_id)
                if len(acknowledged) >= 20:
                    enough.set()

            tasks = [asyncio.create_task(create(f"sg{i:03}")) for i in range(300)]
            await asyncio.wait_for(enough.wait(), 10)
            one.process.kill()  # maybe holding the store's lock, maybe half-way through a write
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(r is None or isinstance(r, PeerUnavailable) for r in results)
        async with await PeerConnection.open(two.host, two.port) as conn:
            await conn.call("create_agent", agent_id="ann", name="Ann", timeout=5)  # the lock died with aw-1
            return await conn.call("get_config")

    config = run(burst_then_carry_on())

    stored = {g["skill_group_id"] for g in config["skill_groups"]}
    assert set(acknowledged) <= stored
    assert config["config_version"] == len(stored) + 1
    assert [a["agent_id"] for a in config["agents"]] == ["ann"]


def test_peerctl_changes_the_icm_outside_collabadmin_through_either_aw(start_peer, tmp_path):
    store = tmp_path / "icm.json"
    one = start_peer("admin-workstation", "--name", "aw-1", "--icm-store", str(store))
    two = start_peer("admin-workstation", "--name", "aw-2", "--icm-store", str(store))
    assert one.ctl("call", "create_skill_group", "skill_group_id=sales", "name=Sales").returncode == 0

    added = two.ctl("icm-add-agent", "zoe", "--name", "Zoe Park", "--skill-group", "sales", "--disabled")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["agent"] == {
        "agent_id": "zoe",
        "name": "Zoe Park",
        "enabled": False,
        "skill_groups": ["sales"],
    }
    seen = json.loads(one.ctl("call", "get_agent", "agent_id=zoe").stdout)
    assert seen["agent"]["name"] == "Zoe Park"

    unknown = one.ctl("icm_add_agent", "yan", "--skill-group", "nope", via_control=True)
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "error: not_found: skill group 'nope' does not exist")

    deleted = one.ctl("icm_delete_agent", "zoe", via_control=True)
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout) == {"agent_id": "zoe", "config_version": 3}
    assert json.loads(two.ctl("call", "get_config").stdout)["agents"] == []
    assert two.ctl("icm-delete-agent", "zoe").returncode == 1


def test_changes_answer_not_found_conflict_invalid_and_version_mismatch(admin_workstation, run):
    async def scenario() -> None:
        async with await PeerConnection.open(admin_workstation.host, admin_workstation.port) as conn:
            await _seed(conn)
            attempts = [
                ("get_agent", {"agent_id": "ghost"}, "not_found"),
                ("create_agent", {"agent_id": "ann", "name": "Again"}, "conflict"),
                ("create_agent", {"agent_id": "cy", "name": "Cy", "skill_groups": ["nope"]}, "not_found"),
                ("create_agent", {"agent_id": "cy", "name": "   "}, "invalid"),
                ("create_agent", {"agent_id": "bad id!", "name": "X"}, "invalid"),
                ("update_agent", {"agent_id": "ann"}, "invalid"),
                ("update_agent", {"agent_id": "ann", "enabled": "yes"}, "invalid"),
                ("add_membership", {"agent_id": "ann", "skill_group_id": "sales"}, "conflict"),
                ("remove_membership", {"agent_id": "ann", "skill_group_id": "support"}, "not_found"),
                ("delete_skill_group", {"skill_group_id": "sales"}, "conflict"),  # ann is a member
                ("delete_agent", {"agent_id": "ann", "expected_version": 1}, "version_mismatch"),
                ("get_skill_group", {"skill_group_id": "sales", "extra": 1}, "invalid"),
            ]
            for op, args, code in attempts:
                with pytest.raises(PeerError) as error:
                    await conn.call(op, **args)
                assert error.value.code == code, (op, args)
            assert (await conn.call("get_config"))["config_version"] == 6  # no failed attempt changed it

    run(scenario())


def test_every_change_increments_the_config_version_and_reads_do_not(admin_workstation, run):
    async def scenario() -> None:
        async with await PeerConnection.open(admin_workstation.host, admin_workstation.port) as conn:
            assert (await conn.call("get_config"))["config_version"] == 0
            created = await conn.call("create_skill_group", skill_group_id="sales", name="Sales", expected_version=0)
            assert created["config_version"] == 1
            await conn.call("list_skill_groups")
            await conn.call("get_skill_group", skill_group_id="sales")
            await conn.call("create_agent", agent_id="ann", name="Ann", skill_groups=["sales"])
            assert await conn.call("get_skill_group", skill_group_id="sales") == {
                "skill_group": {"skill_group_id": "sales", "name": "Sales"},
                "members": ["ann"],
            }
            await conn.call("remove_membership", agent_id="ann", skill_group_id="sales")
            deleted = await conn.call("delete_skill_group", skill_group_id="sales", expected_version=3)
            assert deleted == {"skill_group_id": "sales", "config_version": 4}

    run(scenario())


# -- model-based: the AW's CRUD against a dictionary model -------------------------------

AGENT_IDS = st.sampled_from(["a1", "a2", "a3"])
GROUP_IDS = st.sampled_from(["s1", "s2"])
NAMES = st.sampled_from(["Ann", "Bob", " "])  # " " is blank: invalid
VERSIONS = st.none() | st.integers(min_value=0, max_value=4)
GROUP_LISTS = st.lists(st.sampled_from(["s1", "s2", "s3"]), unique=True, max_size=2)


def _with_version(args: dict[str, Any], version: int | None) -> dict[str, Any]:
    return args if version is None else {**args, "expected_version": version}


OPERATIONS = st.one_of(
    st.tuples(
        st.just("create_agent"),
        st.fixed_dictionaries(
            {"agent_id": AGENT_IDS, "name": NAMES}, optional={"enabled": st.booleans(), "skill_groups": GROUP_LISTS}
        ),
        VERSIONS,
    ),
    st.tuples(
        st.just("update_agent"),
        st.fixed_dictionaries(
            {"agent_id": AGENT_IDS},
            optional={"name": NAMES, "enabled": st.booleans(), "skill_groups": GROUP_LISTS},
        ),
        VERSIONS,
    ),
    st.tuples(st.just("delete_agent"), st.fixed_dictionaries({"agent_id": AGENT_IDS}), VERSIONS),
    st.tuples(
        st.sampled_from(["create_skill_group", "update_skill_group"]),
        st.fixed_dictionaries({"skill_group_id": GROUP_IDS, "name": NAMES}),
        VERSIONS,
    ),
    st.tuples(st.just("delete_skill_group"), st.fixed_dictionaries({"skill_group_id": GROUP_IDS}), VERSIONS),
    st.tuples(
        st.sampled_from(["add_membership", "remove_membership"]),
        st.fixed_dictionaries({"agent_id": AGENT_IDS, "skill_group_id": GROUP_IDS}),
        VERSIONS,
    ),
)


class Model:
    """What the AW should hold: the simplest possible implementation of the same rules."""

    def __init__(self) -> None:
        self.version = 0
        self.agents: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, str] = {}

    def apply(self, op: str, args: dict[str, Any], expected: int | None) -> str | None:
        """Apply one request; return the error code the AW must answer, or None for ok."""
        if not args.get("name", "x").strip():
            return "invalid"
        if op == "update_agent" and len(args) == 1:
            return "invalid"
        if expected is not None and expected != self.version:
            return "version_mismatch"
        error = getattr(self, op)(**args)
        if error is None:
            self.version += 1
        return error

    def create_agent(self, agent_id: str, name: str, enabled: bool = True, skill_groups: tuple = ()) -> str | None:
        if agent_id in self.agents:
            return "conflict"
        if not set(skill_groups) <= set(self.groups):
            return "not_found"
        self.agents[agent_id] = {"name": name, "enabled": enabled, "skill_groups": set(skill_groups)}
        return None

    def update_agent(self, agent_id: str, **changes: Any) -> str | None:
        if agent_id not in self.agents:
            return "not_found"
        if not set(changes.get("skill_groups", ())) <= set(self.groups):
            return "not_found"
        if "skill_groups" in changes:
            changes["skill_groups"] = set(changes["skill_groups"])
        self.agents[agent_id].update(changes)
        return None

    def delete_agent(self, agent_id: str) -> str | None:
        return "not_found" if self.agents.pop(agent_id, None) is None else None

    def create_skill_group(self, skill_group_id: str, name: str) -> str | None:
        if skill_group_id in self.groups:
            return "conflict"
        self.groups[skill_group_id] = name
        return None

    def update_skill_group(self, skill_group_id: str, name: str) -> str | None:
        if skill_group_id not in self.groups:
            return "not_found"
        self.groups[skill_group_id] = name
        return None

    def delete_skill_group(self, skill_group_id: str) -> str | None:
        if skill_group_id not in self.groups:
            return "not_found"
        if any(skill_group_id in a["skill_groups"] for a in self.agents.values()):
            return "conflict"
        del self.groups[skill_group_id]
        return None

    def add_membership(self, agent_id: str, skill_group_id: str) -> str | None:
        if agent_id not in self.agents or skill_group_id not in self.groups:
            return "not_found"
        if skill_group_id in self.agents[agent_id]["skill_groups"]:
            return "conflict"
        self.agents[agent_id]["skill_groups"].add(skill_group_id)
        return None

    def remove_membership(self, agent_id: str, skill_group_id: str) -> str | None:
        if agent_id not in self.agents or skill_group_id not in self.agents[agent_id]["skill_groups"]:
            return "not_found"
        self.agents[agent_id]["skill_groups"].discard(skill_group_id)
        return None

    def config(self) -> dict[str, Any]:
        return {
            "config_version": self.version,
            "agents": [
                {"agent_id": k, "name": v["name"], "enabled": v["enabled"], "skill_groups": sorted(v["skill_groups"])}
                for k, v in sorted(self.agents.items())
            ],
            "skill_groups": [{"skill_group_id": k, "name": v} for k, v in sorted(self.groups.items())],
        }


async def _replay(operations: list[tuple[str, dict[str, Any], int | None]], aws: list[AdminWorkstation]) -> Model:
    """Send the operations in turn to each of ``aws`` (which share whatever they share) and
    compare every answer, and then the configuration each one serves, with one model."""
    model = Model()
    async with contextlib.AsyncExitStack() as stack:
        for aw in aws:
            await aw.start()
            stack.push_async_callback(aw.stop)
        conns = [await stack.enter_async_context(await PeerConnection.open("127.0.0.1", aw.port)) for aw in aws]
        for index, (op, args, version) in enumerate(operations):
            conn = conns[index % len(conns)]
            expected_error = model.apply(op, dict(args), version)
            if expected_error is not None:
                with pytest.raises(PeerError) as error:
                    await conn.call(op, **_with_version(args, version))
                assert error.value.code == expected_error, (op, args, version, error.value)
            else:
                result = await conn.call(op, **_with_version(args, version))
                assert result["config_version"] == model.version, (op, args, version)
        for conn in conns:
            assert await conn.call("get_config") == model.config()
    return model


def _reloads_as(data: Path, model: Model) -> bool:
    reloaded = load_config(data).to_json()
    del reloaded["format"]
    return reloaded == model.config() or (model.version == 0 and load_config(data) == IcmConfig())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPERATIONS, max_size=20))
def test_the_admin_workstation_behaves_like_a_dictionary_model_and_its_file_reloads_identically(operations):
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "aw.json"
        model = asyncio.run(
            asyncio.wait_for(_replay(operations, [AdminWorkstation(name="aw-model", data_file=data)]), 20)
        )
        assert _reloads_as(data, model)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPERATIONS, max_size=20))
def test_two_aws_on_one_icm_store_behave_like_one_dictionary_model(operations):
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "icm.json"
        pair = [AdminWorkstation(name=f"aw-{n}", icm_store=store) for n in (1, 2)]
        model = asyncio.run(asyncio.wait_for(_replay(operations, pair), 20))
        assert _reloads_as(store, model)
