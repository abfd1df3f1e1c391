"""An agent's settings that this server keeps: ``enabled`` and ``max_sessions``.

Who the agent is (its user, server, ICM id) and its skill groups come from the ICM and
change only through the wizards and Verify and Sync (``configsync``). These two are set
here, by a person with a reason, audited with before/after, and the connected Media
Blender is told after the commit (a disabled agent is forgotten there, a new number of
slots is registered). Verify compares ``enabled`` with the ICM: a change made here shows
there as a row to carry to the ICM ("this server → ICM").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from common.actors import Actor
from failover.choices import AuditAction
from failover.services.configuration import config_apply, require_reason
from sessions.choices import AgentState, LogoutReason
from sessions.models import Agent
from sessions.services import followups
from sessions.services.lifecycle import agent_logout

LOCAL_FIELDS = ("enabled", "max_sessions")


def log_out_before_disabling(agent: Agent, *, enabled: bool, actor: Actor, note: str = "") -> None:
    """A logged-in agent being disabled is logged out first: the database refuses a
    disabled agent that is logged in. ``agent`` is locked by the caller and refreshed."""
    if enabled or agent.enabled is False or agent.state == AgentState.LOGGED_OUT:
        return
    with transaction.atomic():
        agent_logout(agent_id=agent.pk, actor=actor, reason=LogoutReason.ADMIN_FORCED, note=note)
    agent.refresh_from_db()


@transaction.atomic
def agent_settings_update(*, agent_id: int, actor: Actor, reason: str, changes: Mapping[str, Any]) -> Agent:
    """Change the agent's local settings; one ``agent.settings_changed`` audit entry with
    the before and after of what changed, and the Media Blender told after the commit."""
    reason = require_reason(reason)
    if unknown := sorted(set(changes) - set(LOCAL_FIELDS)):
        raise ValidationError({name: "Set in the ICM: change it with a wizard or Verify and Sync." for name in unknown})
    agent = Agent.objects.select_for_update().get(pk=agent_id)
    if "enabled" in changes:
        log_out_before_disabling(agent, enabled=changes["enabled"], actor=actor, note=reason)
    changed = config_apply(
        obj=agent, changes=changes, actor=actor, reason=reason, action=AuditAction.AGENT_SETTINGS_CHANGED
    )
    if changed:
        followups.after_agent_changed(agent)
    return agent
