"""Lists page with ?limit= and ?offset=, and no page is larger than 1000 rows."""

from __future__ import annotations

import pytest

from failover.choices import AuditAction
from failover.models import AuditEntry

pytestmark = pytest.mark.django_db


def _audit_entries(n: int) -> None:
    AuditEntry.objects.bulk_create(
        AuditEntry(
            actor_name="system:test",
            action=AuditAction.POLICY_CHANGED,
            object_type="failover.policy",
            object_id="1",
            object_repr="Failover policy",
        )
        for _ in range(n)
    )


def test_a_list_answers_100_rows_by_default(admin_api):
    _audit_entries(101)

    body = admin_api.get("/api/v1/audit/").json()

    assert (body["count"], len(body["results"])) == (101, 100)


def test_a_limit_above_1000_is_capped_at_1000(admin_api):
    _audit_entries(1001)

    body = admin_api.get("/api/v1/audit/", {"limit": 5000}).json()

    assert (body["count"], len(body["results"])) == (1001, 1000)
    assert "offset=1000" in body["next"]


def test_an_unknown_api_path_answers_json_404(admin_api):
    response = admin_api.get("/api/v1/no-such-thing/")

    assert response.status_code == 404
    assert response.json() == {"detail": "No API endpoint at /api/v1/no-such-thing/."}
