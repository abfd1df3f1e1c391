"""The ICM Admin Workstation (AW) simulator.

Serves the ICM configuration: agents, skill groups and their membership (an agent's
``skill_groups``). Every successful change increments ``config_version`` and, when a data
file is set, is written to disk *before* the reply is sent, atomically (temporary file,
fsync, rename, fsync of the directory): a reply ``ok`` means durable, and a SIGKILL at any
instant leaves either the old or the new file, never a torn one.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import protocol
from .simulator import ID_PATTERN, Args, OpError, PeerSimulator, op

FILE_FORMAT = 1
VERSION_MISMATCH = "version_mismatch"
STORAGE_ERROR = "storage_error"


class DataFileError(Exception):
    """The data file exists but cannot be read as an AW configuration (never overwritten)."""


@dataclass
class IcmConfig:
    """The configuration an AW serves. Agents' ``skill_groups`` are kept sorted."""

    config_version: int = 0
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    skill_groups: dict[str, dict[str, Any]] = field(default_factory=dict)

    def members(self, skill_group_id: str) -> list[str]:
        return sorted(a["agent_id"] for a in self.agents.values() if skill_group_id in a["skill_groups"])

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FILE_FORMAT,
            "config_version": self.config_version,
            "agents": [self.agents[k] for k in sorted(self.agents)],
            "skill_groups": [self.skill_groups[k] for k in sorted(self.skill_groups)],
        }

    @classmethod
    def from_json(cls, data: Any) -> IcmConfig:
        """Build from ``to_json`` output; raises ``ValueError`` naming the first problem."""
        if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
            raise ValueError(f"not an AW configuration of format {FILE_FORMAT}")
        version = data.get("config_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise ValueError("config_version must be a non-negative integer")
        config = cls(config_version=version)
        for group in data.get("skill_groups", []):
            if not isinstance(group, dict) or not _is_id(group.get("skill_group_id")):
                raise ValueError(f"bad skill group {group!r}")
            if not isinstance(group.get("name"), str):
                raise ValueError(f"bad skill group name in {group!r}")
            config.skill_groups[group["skill_group_id"]] = {
                "skill_group_id": group["skill_group_id"],
                "name": group["name"],
            }
        for agent in data.get("agents", []):
            if not isinstance(agent, dict) or not _is_id(agent.get("agent_id")):
                raise ValueError(f"bad agent {agent!r}")
            groups = agent.get("skill_groups")
            if not isinstance(groups, list) or not all(g in config.skill_groups for g in groups):
                raise ValueError(f"agent {agent['agent_id']} refers to unknown skill groups")
            if not isinstance(agent.get("name"), str) or not isinstance(agent.get("enabled"), bool):
                raise ValueError(f"bad name or enabled in agent {agent['agent_id']}")
            config.agents[agent["agent_id"]] = {
                "agent_id": agent["agent_id"],
                "name": agent["name"],
                "enabled": agent["enabled"],
                "skill_groups": sorted(set(groups)),
            }
        return config


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and ID_PATTERN.match(value) is not None


def atomic_write_json(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as JSON so that a crash leaves the old or the new file.

    Temporary file in the same directory (so ``os.replace`` is an atomic rename), fsync of
    the file before the rename, fsync of the directory after it (so the rename itself
    survives a power cut, not only a process kill).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_config(path: Path) -> IcmConfig:
    """Read a data file; a missing file is an empty configuration, a bad one a ``DataFileError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return IcmConfig()
    except OSError as exc:
        raise DataFileError(f"cannot read {path}: {exc}") from exc
    try:
        return IcmConfig.from_json(json.loads(text))
    except ValueError as exc:
        raise DataFileError(f"{path} is not a valid AW data file ({exc}); refusing to start") from exc


class AdminWorkstation(PeerSimulator):
    """ICM Admin Workstation simulator (kind ``admin-workstation``); see docs/peer-protocol.md.

    ``data_file`` may contain ``{port}``, replaced by the bound port (one file per simulated
    peer when a process serves many). ``None`` keeps the configuration in memory only.
    """

    kind = "admin-workstation"

    def __init__(
        self, *, name: str, host: str = "127.0.0.1", port: int = 0, data_file: str | Path | None = None
    ) -> None:
        super().__init__(name=name, host=host, port=port)
        self.data_template = str(data_file) if data_file is not None else None
        self.data_path: Path | None = None
        self.config = IcmConfig()
        # Changes are serialised per peer: each one validates against the configuration
        # the previous one published, while its disk write runs in a thread (so one AW's
        # fsync never stalls the other peers served by the same event loop).
        self._change_lock = asyncio.Lock()

    def prepare(self) -> None:
        """Load the data file once the port is bound (its name may contain ``{port}``)."""
        super().prepare()
        if self.data_template is not None:
            self.data_path = Path(self.data_template.replace("{port}", str(self.port)))
            self.config = load_config(self.data_path)
            self.data_path.parent.mkdir(parents=True, exist_ok=True)

    # -- the change path ----------------------------------------------------------------

    async def _change(self, args: Args, apply: Callable[[IcmConfig], dict[str, Any]]) -> dict[str, Any]:
        """Apply ``apply`` to a copy, bump the version, persist, then publish the copy.

        Working on a copy means a validation error or a failed write leaves the served
        configuration untouched, and reads during the write still see the previous
        (acknowledged) version. ``expected_version`` (optional) makes the change a
        compare-and-set: a writer that read version N fails instead of overwriting a
        concurrent change.
        """
        expected = args.opt(args.integer, "expected_version")
        async with self._change_lock:
            if expected is not None and expected != self.config.config_version:
                raise OpError(
                    VERSION_MISMATCH,
                    f"configuration is at version {self.config.config_version}, not {expected}",
                )
            draft = copy.deepcopy(self.config)
            result = apply(draft)
            draft.config_version += 1
            if self.data_path is not None:
                try:
                    await asyncio.to_thread(atomic_write_json, self.data_path, draft.to_json())
                except OSError as exc:
                    raise OpError(STORAGE_ERROR, f"cannot write {self.data_path}: {exc}") from exc
            self.config = draft
            return {**result, "config_version": draft.config_version}

    def _get_agent(self, config: IcmConfig, agent_id: str) -> dict[str, Any]:
        agent = config.agents.get(agent_id)
        if agent is None:
            raise OpError(protocol.NOT_FOUND, f"agent '{agent_id}' does not exist")
        return agent

    def _get_group(self, config: IcmConfig, skill_group_id: str) -> dict[str, Any]:
        group = config.skill_groups.get(skill_group_id)
        if group is None:
            raise OpError(protocol.NOT_FOUND, f"skill group '{skill_group_id}' does not exist")
        return group

    def _check_groups(self, config: IcmConfig, groups: list[str]) -> list[str]:
        for group_id in groups:
            self._get_group(config, group_id)
        return sorted(groups)

    # -- reads --------------------------------------------------------------------------

    @op("get_config")
    def op_get_config(self, args: Args) -> dict[str, Any]:
        """The whole configuration with its version (what Verify and Sync compares)."""
        data = self.config.to_json()
        del data["format"]
        return data

    @op("list_agents")
    def op_list_agents(self, args: Args) -> dict[str, Any]:
        return {"agents": self.config.to_json()["agents"], "config_version": self.config.config_version}

    @op("get_agent", "agent_id")
    def op_get_agent(self, args: Args) -> dict[str, Any]:
        return {"agent": self._get_agent(self.config, args.identifier("agent_id"))}

    @op("list_skill_groups")
    def op_list_skill_groups(self, args: Args) -> dict[str, Any]:
        return {"skill_groups": self.config.to_json()["skill_groups"], "config_version": self.config.config_version}

    @op("get_skill_group", "skill_group_id")
    def op_get_skill_group(self, args: Args) -> dict[str, Any]:
        group_id = args.identifier("skill_group_id")
        return {"skill_group": self._get_group(self.config, group_id), "members": self.config.members(group_id)}

    # -- agents -------------------------------------------------------------------------

    @op("create_agent", "agent_id", "name", "enabled", "skill_groups", "expected_version")
    async def op_create_agent(self, args: Args) -> dict[str, Any]:
        agent_id = args.identifier("agent_id")
        name = args.text("name")
        enabled = args.opt(args.boolean, "enabled")
        groups = args.opt(args.identifier_list, "skill_groups") or []

        def apply(config: IcmConfig) -> dict[str, Any]:
            if agent_id in config.agents:
                raise OpError(protocol.CONFLICT, f"agent '{agent_id}' already exists")
            agent = {
                "agent_id": agent_id,
                "name": name,
                "enabled": True if enabled is None else enabled,
                "skill_groups": self._check_groups(config, groups),
            }
            config.agents[agent_id] = agent
            return {"agent": agent}

        return await self._change(args, apply)

    @op("update_agent", "agent_id", "name", "enabled", "skill_groups", "expected_version")
    async def op_update_agent(self, args: Args) -> dict[str, Any]:
        """Change any of name, enabled, skill_groups (the full membership list)."""
        agent_id = args.identifier("agent_id")
        changes: dict[str, Any] = {}
        if args.has("name"):
            changes["name"] = args.text("name")
        if args.has("enabled"):
            changes["enabled"] = args.boolean("enabled")
        if args.has("skill_groups"):
            changes["skill_groups"] = args.identifier_list("skill_groups")
        if not changes:
            raise OpError(protocol.INVALID, "nothing to update: give name, enabled or skill_groups")

        def apply(config: IcmConfig) -> dict[str, Any]:
            agent = self._get_agent(config, agent_id)
            if "skill_groups" in changes:
                changes["skill_groups"] = self._check_groups(config, changes["skill_groups"])
            agent.update(changes)
            return {"agent": agent}

        return await self._change(args, apply)

    @op("delete_agent", "agent_id", "expected_version")
    async def op_delete_agent(self, args: Args) -> dict[str, Any]:
        agent_id = args.identifier("agent_id")

        def apply(config: IcmConfig) -> dict[str, Any]:
            self._get_agent(config, agent_id)
            del config.agents[agent_id]
            return {"agent_id": agent_id}

        return await self._change(args, apply)

    # -- skill groups -------------------------------------------------------------------

    @op("create_skill_group", "skill_group_id", "name", "expected_version")
    async def op_create_skill_group(self, args: Args) -> dict[str, Any]:
        group_id = args.identifier("skill_group_id")
        name = args.text("name")

        def apply(config: IcmConfig) -> dict[str, Any]:
            if group_id in config.skill_groups:
                raise OpError(protocol.CONFLICT, f"skill group '{group_id}' already exists")
            group = config.skill_groups[group_id] = {"skill_group_id": group_id, "name": name}
            return {"skill_group": group}

        return await self._change(args, apply)

    @op("update_skill_group", "skill_group_id", "name", "expected_version")
    async def op_update_skill_group(self, args: Args) -> dict[str, Any]:
        group_id = args.identifier("skill_group_id")
        name = args.text("name")

        def apply(config: IcmConfig) -> dict[str, Any]:
            group = self._get_group(config, group_id)
            group["name"] = name
            return {"skill_group": group}

        return await self._change(args, apply)

    @op("delete_skill_group", "skill_group_id", "expected_version")
    async def op_delete_skill_group(self, args: Args) -> dict[str, Any]:
        """Delete an empty skill group; one with members is a ``conflict`` (remove them first)."""
        group_id = args.identifier("skill_group_id")

        def apply(config: IcmConfig) -> dict[str, Any]:
            self._get_group(config, group_id)
            if members := config.members(group_id):
                raise OpError(protocol.CONFLICT, f"skill group '{group_id}' has members: {', '.join(members)}")
            del config.skill_groups[group_id]
            return {"skill_group_id": group_id}

        return await self._change(args, apply)

    # -- membership ---------------------------------------------------------------------

    @op("add_membership", "agent_id", "skill_group_id", "expected_version")
    async def op_add_membership(self, args: Args) -> dict[str, Any]:
        agent_id = args.identifier("agent_id")
        group_id = args.identifier("skill_group_id")

        def apply(config: IcmConfig) -> dict[str, Any]:
            agent = self._get_agent(config, agent_id)
            self._get_group(config, group_id)
            if group_id in agent["skill_groups"]:
                raise OpError(protocol.CONFLICT, f"agent '{agent_id}' is already in '{group_id}'")
            agent["skill_groups"] = sorted([*agent["skill_groups"], group_id])
            return {"agent": agent}

        return await self._change(args, apply)

    @op("remove_membership", "agent_id", "skill_group_id", "expected_version")
    async def op_remove_membership(self, args: Args) -> dict[str, Any]:
        agent_id = args.identifier("agent_id")
        group_id = args.identifier("skill_group_id")

        def apply(config: IcmConfig) -> dict[str, Any]:
            agent = self._get_agent(config, agent_id)
            if group_id not in agent["skill_groups"]:
                raise OpError(protocol.NOT_FOUND, f"agent '{agent_id}' is not in skill group '{group_id}'")
            agent["skill_groups"] = [g for g in agent["skill_groups"] if g != group_id]
            return {"agent": agent}

        return await self._change(args, apply)
