"""Wizard input is checked by the service itself, whoever calls it (page, API, script)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from configsync.services.wizards import plan_steps
from failover.choices import WizardKind

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "params",
    [
        {"skill_group_id": "billing", "name": "Bil\x00ling"},
        {"skill_group_id": "bill\x00ing", "name": "Billing"},
    ],
)
def test_a_nul_character_is_refused_before_any_query(server, params):
    # PostgreSQL cannot store text with a NUL: without this check the query itself fails (a 500).
    with pytest.raises(ValidationError) as refused:
        plan_steps(server.pk, WizardKind.ADD_SKILL_GROUP, params)
    assert "Null characters are not allowed." in str(refused.value)
