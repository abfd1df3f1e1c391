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


# --- Malformed paging is a 400 naming the parameter (issue 15) ---------------------------------
# DRF's LimitOffsetPagination read a value it could not parse as if it were absent: a client
# asking for ``limit=null&offset=abc`` got the first 100 rows and a 200.


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("limit=null", "limit"),
        ("offset=abc", "offset"),
        ("limit=null&offset=abc", "limit"),
        ("limit=0", "limit"),
        ("limit=-5", "limit"),
        ("offset=-1", "offset"),
        ("limit=", "limit"),
        ("offset=1.5", "offset"),
        ("limit=%2B5", "limit"),  # "+5": int() takes it, the schema's integer does not
        ("offset=%D9%A3", "offset"),  # an Arabic-Indic digit three
        ("offset=1&offset=2", "offset"),
        ("limit=10&limit=10", "limit"),
    ],
)
def test_malformed_paging_is_a_400_naming_the_parameter(admin_api, query, named):
    _audit_entries(3)

    response = admin_api.get(f"/api/v1/audit/?{query}")

    assert response.status_code == 400, response.content
    assert named in response.json(), response.json()
    assert response.json()[named][0]


def test_a_repeated_offset_says_so(admin_api):
    response = admin_api.get("/api/v1/audit/?offset=0&offset=5")

    assert response.json() == {"offset": ["Give offset once, not 2 times."]}


def test_well_formed_paging_still_pages(admin_api):
    _audit_entries(5)

    body = admin_api.get("/api/v1/audit/", {"limit": 2, "offset": 4}).json()

    assert (body["count"], len(body["results"]), body["next"]) == (5, 1, None)
    assert "limit=2" in body["previous"]


def test_an_offset_past_the_end_is_an_empty_page(admin_api):
    _audit_entries(2)

    body = admin_api.get("/api/v1/audit/", {"offset": 2**70}).json()

    assert (body["count"], body["results"]) == (2, [])


def test_the_schema_documents_the_minimums(admin_api):
    schema = admin_api.get("/api/v1/schema/?format=json").json()

    parameters = {p["name"]: p["schema"] for p in schema["paths"]["/api/v1/audit/"]["get"]["parameters"]}
    assert parameters["limit"] == {"type": "integer", "minimum": 1}
    assert parameters["offset"] == {"type": "integer", "minimum": 0}
