"""This server's side of the ICM configuration: agents, skill groups, memberships, enabled.

Reads (the snapshot Verify compares, its fingerprint) and the small writes the wizards and
Sync make, each in the caller's transaction and idempotent: doing one twice is a no-op the
second time, which is what lets a wizard or a sync be re-run after an interruption.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import ProtectedError

from common.actors import Actor
from failover.models import Policy
from sessions.models import Agent, SkillGroup
from sessions.services import followups
from sessions.services.agent_settings import log_out_before_disabling


@dataclass(frozen=True)
class LocalConfig:
    agents: dict[str, dict[str, Any]]  # icm_id -> {"name", "enabled", "skill_groups": [...]}
    skill_groups: dict[str, str]  # icm_id -> name

    def fingerprint(self) -> str:
        """SHA-256 of what Verify compares (names left out: they are not compared)."""
        data = {
            "agents": {k: {"enabled": v["enabled"], "skill_groups": v["skill_groups"]} for k, v in self.agents.items()},
            "skill_groups": sorted(self.skill_groups),
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def local_config(server_id: int) -> LocalConfig:
    """The server's configuration in three queries."""
    groups = dict(SkillGroup.objects.filter(server_id=server_id).values_list("icm_id", "name"))
    agents: dict[str, dict[str, Any]] = {}
    for agent in Agent.objects.filter(server_id=server_id).select_related("user").prefetch_related("skill_groups"):
        agents[agent.icm_id] = {
            "name": agent.display_name,
            "enabled": agent.enabled,
            "skill_groups": sorted(g.icm_id for g in agent.skill_groups.all()),
        }
    return LocalConfig(agents=agents, skill_groups=groups)


def local_fingerprint(server_id: int) -> str:
    return local_config(server_id).fingerprint()


# --- Writes (in the caller's transaction) ------------------------------------------------


def skill_group_create(*, server_id: int, icm_id: str, name: str) -> tuple[SkillGroup, bool]:
    """Create the skill group (a name already used gets the id appended); (group, created)."""
    group = SkillGroup.objects.filter(server_id=server_id, icm_id=icm_id).first()
    if group is not None:
        return group, False
    if SkillGroup.objects.filter(server_id=server_id, name=name).exists():
        name = f"{name} ({icm_id})"[:100]
    return SkillGroup.objects.create(server_id=server_id, icm_id=icm_id, name=name[:100]), True


def skill_group_delete(*, server_id: int, icm_id: str) -> bool:
    """Delete the skill group (its memberships go with it); ``False`` if it was not there.

    Refused (``ValidationError``) while open sessions ask for it: they would otherwise be
    left without a skill group, and such a session must not go to just any agent.
    """
    group = SkillGroup.objects.filter(server_id=server_id, icm_id=icm_id).first()
    if group is None:
        return False
    members = list(group.agents.all())
    try:
        group.delete()
    except ProtectedError as refused:
        raise ValidationError(
            f"Skill group {icm_id} ({group.name}) is asked for by {len(refused.protected_objects)} open "
            "session(s); delete it once they have ended."
        ) from refused
    for agent in members:
        followups.after_agent_changed(agent)
    return True


def _split_name(name: str) -> tuple[str, str]:
    first, _, last = name.strip().partition(" ")
    return first[:150], last[:150]


def agent_create(
    *,
    server_id: int,
    icm_id: str,
    name: str,
    enabled: bool,
    skill_groups: list[str],
    username: str = "",
    max_sessions: int | None = None,
) -> tuple[Agent, bool]:
    """Create the agent and its log-in user (or use a user without an agent); (agent, created).

    Skill groups unknown here are skipped (Sync creates skill groups first). A new user has
    no usable password: the agent chooses one through a set-password link
    (``sessions.passwords``). ``max_sessions`` defaults to the policy's ``agent_max_sessions``.
    """
    agent = Agent.objects.filter(server_id=server_id, icm_id=icm_id).first()
    if agent is not None:
        return agent, False
    users = get_user_model()
    username = username or icm_id
    user = users.objects.filter(username=username).first()
    if user is None:
        first, last = _split_name(name)
        user = users.objects.create_user(username=username, first_name=first, last_name=last)
    elif Agent.objects.filter(user=user).exists():
        raise ValidationError({"username": f"User {username} is already an agent."})
    slots = max_sessions or Policy.current().agent_max_sessions
    agent = Agent.objects.create(user=user, server_id=server_id, icm_id=icm_id, enabled=enabled, max_sessions=slots)
    agent.skill_groups.set(SkillGroup.objects.filter(server_id=server_id, icm_id__in=skill_groups))
    return agent, True


def agent_delete(*, server_id: int, icm_id: str) -> bool:
    """Delete the agent (its log-in user stays, as a plain user); ``False`` if it was not there.

    Refused (``ValidationError``) for an agent with sessions: their history keeps it.
    """
    agent = Agent.objects.filter(server_id=server_id, icm_id=icm_id).first()
    if agent is None:
        return False
    held = agent.sessions.count()
    if held:
        raise ValidationError(
            f"Agent {icm_id} has {held} session(s) in its history and cannot be deleted here; disable it instead."
        )
    agent.delete()
    return True


def _agent(server_id: int, icm_id: str) -> Agent:
    agent = Agent.objects.select_for_update().filter(server_id=server_id, icm_id=icm_id).first()
    if agent is None:
        raise ValidationError(f"Agent {icm_id} does not exist on this server.")
    return agent


def agent_set_skill_groups(*, server_id: int, icm_id: str, skill_groups: list[str]) -> Agent:
    agent = _agent(server_id, icm_id)
    agent.skill_groups.set(SkillGroup.objects.filter(server_id=server_id, icm_id__in=skill_groups))
    followups.after_agent_changed(agent)
    return agent


def membership_set(*, server_id: int, icm_id: str, skill_group: str, member: bool) -> bool:
    """Add or remove one membership; ``True`` if it changed."""
    agent = _agent(server_id, icm_id)
    group = SkillGroup.objects.filter(server_id=server_id, icm_id=skill_group).first()
    if group is None:
        if member:
            raise ValidationError(f"Skill group {skill_group} does not exist on this server.")
        return False
    present = agent.skill_groups.filter(pk=group.pk).exists()
    if present == member:
        return False
    if member:
        agent.skill_groups.add(group)
    else:
        agent.skill_groups.remove(group)
    followups.after_agent_changed(agent)
    return True


def agent_set_enabled(*, server_id: int, icm_id: str, enabled: bool, actor: Actor) -> bool:
    """Enable or disable; a logged-in agent is logged out first (the database insists)."""
    agent = _agent(server_id, icm_id)
    if agent.enabled == enabled:
        return False
    log_out_before_disabling(agent, enabled=enabled, actor=actor)
    agent.enabled = enabled
    agent.save(update_fields=["enabled"])
    followups.after_agent_changed(agent)
    return True
