"""The ICM Admin Workstation (AW) simulator.

Serves the ICM configuration: agents, skill groups and their membership (an agent's
``skill_groups``). Every successful change increments ``config_version``. Where the
configuration lives is the store's business (``icm_store.py``): the AW's own copy, in
memory or in a data file written atomically before the reply (``--data``), or the ICM
database both AWs of a pair share (``--icm-store``). Either way a reply ``ok`` means
durable, and a SIGKILL at any instant leaves the old or the new file, never a torn one.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from . import protocol
from .icm_store import Apply, IcmConfig, IcmStore, PrivateStore, SharedStore
from .simulator import Args, OpError, PeerSimulator, op


class AdminWorkstation(PeerSimulator):
    """ICM Admin Workstation simulator (kind ``admin-workstation``); see docs/peer-protocol.md.

    ``data_file``: this AW's own copy of the configuration (may contain ``{port}``,
    replaced by the bound port: one file per simulated peer when a process serves many).
    ``icm_store``: the ICM database shared with the other AW of the pair (every AW given
    the same path serves one ICM). Neither: an own copy in memory only.
    """

    kind = "admin-workstation"

    def __init__(
        self,
        *,
        name: str,
        host: str = "127.0.0.1",
        port: int = 0,
        data_file: str | Path | None = None,
        icm_store: str | Path | None = None,
    ) -> None:
        super().__init__(name=name, host=host, port=port)
        if data_file is not None and icm_store is not None:
            raise ValueError("give a data file (this AW's own copy) or a shared ICM store, not both")
        self.store: IcmStore = (
            SharedStore(icm_store) if icm_store is not None else PrivateStore(str(data_file) if data_file else None)
        )
        # Changes are serialised per peer: each one validates against the configuration
        # the previous one left (a shared store also locks out the other AW's changes).
        self._change_lock = asyncio.Lock()

    @property
    def config(self) -> IcmConfig:
        """What this AW serves now (read from the shared store, if it has one)."""
        return self.store.read()

    def prepare(self) -> None:
        """Open the store once the port is bound (a data file's name may contain ``{port}``)."""
        super().prepare()
        self.store.open(self.port)

    # -- the change path ----------------------------------------------------------------

    async def _change(self, args: Args, apply: Apply) -> dict[str, Any]:
        """Apply ``apply`` to the configuration, bump the version, persist, reply.

        A validation error or a failed write changes nothing. ``expected_version``
        (optional) makes the change a compare-and-set: a writer that read version N fails
        instead of overwriting a concurrent change (made through either AW of a pair).
        """
        expected = args.opt(args.integer, "expected_version")
        async with self._change_lock:
            return await self.store.change(expected, apply)

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
        config = self.config
        return {"agents": config.to_json()["agents"], "config_version": config.config_version}

    @op("get_agent", "agent_id")
    def op_get_agent(self, args: Args) -> dict[str, Any]:
        return {"agent": self._get_agent(self.config, args.identifier("agent_id"))}

    @op("list_skill_groups")
    def op_list_skill_groups(self, args: Args) -> dict[str, Any]:
        config = self.config
        return {"skill_groups": config.to_json()["skill_groups"], "config_version": config.config_version}

    @op("get_skill_group", "skill_group_id")
    def op_get_skill_group(self, args: Args) -> dict[str, Any]:
        group_id = args.identifier("skill_group_id")
        config = self.config
        return {"skill_group": self._get_group(config, group_id), "members": config.members(group_id)}

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
