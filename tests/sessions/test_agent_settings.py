"""``agent_settings_update``: an agent's local settings, with a reason, audited."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.exceptions import ValidationError

from failover.choices import AuditAction
from failover.models import AuditEntry
from sessions.choices import AgentState, LogoutReason
from sessions.models import Agent
from sessions.services.agent_settings import agent_settings_update

pytestmark = pytest.mark.django_db


def test_disabling_a_logged_in_agent_logs_it_out_first_and_audits_both(
    make_agent: Callable[..., Agent], admin_user
) -> None:
    ann = make_agent("ann", "Sales")

    agent_settings_update(agent_id=ann.pk, actor=admin_user, reason="Left the team", changes={"enabled": False})

    ann.refresh_from_db()
    assert (ann.enabled, ann.state, ann.logout_reason) == (False, AgentState.LOGGED_OUT, LogoutReason.ADMIN_FORCED)
    settings = AuditEntry.objects.get(action=AuditAction.AGENT_SETTINGS_CHANGED)
    assert (settings.actor, settings.reason) == (admin_user, "Left the team")
    assert (settings.before, settings.after) == ({"enabled": True}, {"enabled": False})
    assert AuditEntry.objects.filter(action=AuditAction.AGENT_LOGGED_OUT, object_id=str(ann.pk)).exists()


@pytest.mark.parametrize(
    ("reason", "changes", "field"),
    [
        ("", {"max_sessions": 2}, "reason"),
        ("Moved", {"icm_id": "9999"}, "icm_id"),
        ("More work", {"max_sessions": 0}, "max_sessions"),
    ],
    ids=["no reason", "an ICM field", "no slot"],
)
def test_a_refused_change_changes_nothing(
    make_agent: Callable[..., Agent], admin_user, reason: str, changes: dict, field: str
) -> None:
    ann = make_agent("ann", "Sales", ready=False)

    with pytest.raises(ValidationError) as refused:
        agent_settings_update(agent_id=ann.pk, actor=admin_user, reason=reason, changes=changes)

    assert field in refused.value.message_dict
    ann.refresh_from_db()
    assert (ann.icm_id, ann.max_sessions) == ("ann", 1)
    assert not AuditEntry.objects.filter(action=AuditAction.AGENT_SETTINGS_CHANGED).exists()
