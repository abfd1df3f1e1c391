"""Verify's comparison, row by row: every kind of difference, both sides, both fixes.

The rows are what the Verify and Sync page shows and what Sync applies, so their wording,
their fixes and their order are pinned here exactly."""

from __future__ import annotations

from configsync.services.icm import IcmConfig
from configsync.services.local_config import LocalConfig
from configsync.services.verify import compare


def _agent(name: str, *, enabled: bool = True, groups: tuple[str, ...] = ()) -> dict:
    return {"name": name, "enabled": enabled, "skill_groups": list(groups)}


def _summary(rows: list[dict]) -> list[tuple]:
    return [
        (
            row["id"],
            row["summary"],
            row["local"],
            row["icm"],
            row["fixes"]["from_icm"]["op"],
            row["fixes"]["from_icm"]["text"],
            row["fixes"]["from_icm"]["removal"],
            row["fixes"]["to_icm"]["op"],
            row["fixes"]["to_icm"]["text"],
            row["fixes"]["to_icm"]["removal"],
        )
        for row in rows
    ]


def test_identical_configurations_have_no_difference():
    agents = {"a1": _agent("Ann", groups=("sales",))}
    local = LocalConfig(agents=agents, skill_groups={"sales": "Sales"})
    remote = IcmConfig(version=3, agents=agents, skill_groups={"sales": "Sales"})
    assert compare(local, remote) == []


def test_every_kind_of_difference_is_one_row_with_both_fixes_in_order():
    local = LocalConfig(
        agents={
            "a1": _agent("Ann", groups=("sales", "billing")),
            "a2": _agent("Bob", enabled=False),
            "a3": _agent("Cy"),
        },
        skill_groups={"sales": "Sales", "billing": "Billing"},
    )
    remote = IcmConfig(
        version=7,
        agents={
            "a1": _agent("Ann", groups=("sales", "support")),
            "a2": _agent("Bob", enabled=True),
            "a4": _agent("Di", groups=("support",)),
        },
        skill_groups={"sales": "Sales", "support": "Support"},
    )
    rows = compare(local, remote)
    assert _summary(rows) == [
        ("skill_group:billing", "Skill group billing exists only on this server", "Billing", "missing",
         "delete_local", "Delete skill group billing from this server", True,
         "create_icm", "Create skill group billing in the ICM", False),
        ("skill_group:support", "Skill group support exists only in the ICM", "missing", "Support",
         "create_local", "Create skill group support on this server", False,
         "delete_icm", "Delete skill group support from the ICM", True),
        ("membership:a1:billing", "Agent a1 is in skill group billing only on this server", "member", "not a member",
         "delete_local", "Remove a1 from billing on this server", True,
         "create_icm", "Add a1 to billing in the ICM", False),
        ("membership:a1:support", "Agent a1 is in skill group support only in the ICM", "not a member", "member",
         "create_local", "Add a1 to support on this server", False,
         "delete_icm", "Remove a1 from support in the ICM", True),
        ("agent_enabled:a2", "Agent a2 is disabled here but enabled in the ICM", "disabled", "enabled",
         "set_local", "Enable a2 on this server", False,
         "set_icm", "Disable a2 in the ICM", False),
        ("agent:a3", "Agent a3 exists only on this server", "Cy (enabled; no skill groups)", "missing",
         "delete_local", "Delete agent a3 from this server", True,
         "create_icm", "Create agent a3 in the ICM", False),
        ("agent:a4", "Agent a4 exists only in the ICM", "missing", "Di (enabled; support)",
         "create_local", "Create agent a4 on this server", False,
         "delete_icm", "Delete agent a4 from the ICM", True),
    ]  # fmt: skip
    # What Sync needs to apply a row travels with it; nothing is approved by default, the
    # ICM is the source of truth.
    by_id = {row["id"]: row for row in rows}
    assert by_id["agent:a4"]["data"] == {"agent_id": "a4", **_agent("Di", groups=("support",))}
    assert by_id["membership:a1:billing"]["data"] == {"agent_id": "a1", "skill_group_id": "billing"}
    assert by_id["agent_enabled:a2"]["data"] == {"agent_id": "a2", "local": False, "icm": True}
    assert by_id["skill_group:support"]["data"] == {"skill_group_id": "support", "name": "Support"}
    assert {(row["direction"], row["approved"], row["result"]) for row in rows} == {("from_icm", False, None)}
