"""History filtered by date range and exported as CSV (issue 19, point 5): the console's
pages and exports, and the API's lists and ``export/`` endpoints, with the same rules."""

from __future__ import annotations

import csv
import gc
import io
import tracemalloc
from datetime import UTC, datetime

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.http import StreamingHttpResponse
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from common.csv_export import CHUNK_SIZE, cell
from failover.choices import AuditAction
from failover.models import AuditEntry
from tests.factories import FailoverEventFactory, ServerFactory, SessionFactory

pytestmark = pytest.mark.django_db


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def audit_at(moment: str, reason: str = "", object_repr: str = "routing-a") -> AuditEntry:
    entry = AuditEntry.objects.create(
        actor_name="user:admin",
        action=AuditAction.SERVER_DRAINED,
        object_type="failover.server",
        object_id="1",
        object_repr=object_repr,
        reason=reason,
    )
    AuditEntry.objects.filter(pk=entry.pk).update(created_at=at(moment))  # auto_now_add
    return entry


def rows_of(response) -> list[list[str]]:
    assert isinstance(response, StreamingHttpResponse)
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


@pytest.fixture
def three_days(db):
    """Audit entries at the very start and end of 2026-03-01, and one the next morning."""
    return [
        audit_at("2026-02-28T23:59:59.999999"),
        audit_at("2026-03-01T00:00:00"),
        audit_at("2026-03-01T23:59:59.999999"),
        audit_at("2026-03-02T00:00:00"),
    ]


def test_a_date_range_includes_both_whole_days_and_nothing_outside(admin_client, three_days):
    _, start, end, _ = three_days

    listed = admin_client.get(reverse("api-audit-list"), {"from": "2026-03-01", "to": "2026-03-01"}).json()
    exported = rows_of(admin_client.get(reverse("console-export-audit"), {"from": "2026-03-01", "to": "2026-03-01"}))

    assert [row["id"] for row in listed["results"]] == [end.pk, start.pk]
    assert [int(row[0]) for row in exported[1:]] == [end.pk, start.pk]


def test_a_moment_as_a_bound_is_included(admin_client, three_days):
    _, start, end, after = three_days

    listed = admin_client.get(
        reverse("api-audit-list"), {"from": "2026-03-01T00:00:00Z", "to": "2026-03-02T01:00:00+01:00"}
    ).json()

    assert [row["id"] for row in listed["results"]] == [after.pk, end.pk, start.pk]


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ({"from": "yesterday"}, "from", "is not a date"),
        ({"to": "2026-02-30"}, "to", "is not a real date"),
        ({"from": "2026-03-02", "to": "2026-03-01"}, "to", "before its start"),
    ],
)
def test_a_bad_range_is_refused_with_a_clear_message_everywhere(admin_client, three_days, query, field, message):
    for name in ("api-audit-list", "api-audit-export", "api-event-list", "api-event-export", "api-session-export"):
        response = admin_client.get(reverse(name), query)
        assert response.status_code == 400, name
        assert response["Content-Type"].startswith("application/json"), name
        assert message in response.json()[field][0], name
    for name in ("console-export-audit", "console-export-events", "console-export-sessions"):
        response = admin_client.get(reverse(name), query)
        assert response.status_code == 400, name
        assert message in response.content.decode(), name
    for name in ("console-timeline", "console-sessions"):
        page = admin_client.get(reverse(name), query)
        assert page.status_code == 400, name
        html = page.content.decode()
        assert 'role="alert"' in html, name
        assert message in html, name
        assert 'aria-invalid="true"' in html, name
        # The page's live refresh goes on (unfiltered) rather than failing.
        assert admin_client.get(reverse(name), {**query, "fragment": "1"}).status_code == 200, name


def test_the_pages_filter_by_date_range(admin_client, three_days):
    page = admin_client.get(reverse("console-timeline"), {"from": "2026-03-02"}).content.decode()

    assert f'id="audit-{three_days[3].pk}"' in page
    assert f'id="audit-{three_days[2].pk}"' not in page
    assert 'value="2026-03-02"' in page  # the form shows the range back


def test_the_csv_has_a_header_iso_utc_times_and_no_formula_cells(admin_client):
    entry = audit_at("2026-03-01T08:30:00", reason='=HYPERLINK("http://evil")', object_repr="@SUM(A1)")
    audit_at("2026-03-01T09:00:00", reason="+33 1 23", object_repr="-2+3")

    response = admin_client.get(reverse("console-export-audit"))
    rows = rows_of(response)

    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    assert rows[0] == [
        "id",
        "created_at",
        "actor",
        "action",
        "object_type",
        "object_id",
        "object",
        "reason",
        "before",
        "after",
    ]
    by_id = {row[0]: row for row in rows[1:]}
    first = by_id[str(entry.pk)]
    assert first[1] == "2026-03-01T08:30:00Z"
    assert first[6] == "'@SUM(A1)"
    assert first[7] == '\'=HYPERLINK("http://evil")'
    assert {row[6] for row in rows[1:]} == {"'@SUM(A1)", "'-2+3"}
    assert {row[7] for row in rows[1:]} == {'\'=HYPERLINK("http://evil")', "'+33 1 23"}
    assert all(not value.startswith(("=", "+", "-", "@")) for row in rows for value in row)


def test_cells_are_guarded_but_numbers_are_not():
    assert cell("=1+1") == "'=1+1"
    assert cell("\t=1") == "'\t=1"
    assert cell(-3) == "-3"
    assert cell(None) == ""
    assert cell(at("2026-03-01T08:30:00")) == "2026-03-01T08:30:00Z"


def test_the_api_export_takes_the_lists_filters(admin_client):
    server, other = ServerFactory(name="routing-a"), ServerFactory(name="routing-b")
    kept = FailoverEventFactory(server=server, reason="-mb-1 crashed")
    FailoverEventFactory(server=other)

    response = admin_client.get(reverse("api-event-export"), {"server": server.pk})
    rows = rows_of(response)

    assert rows[0][:3] == ["id", "detected_at", "failed_at"]
    assert [row[0] for row in rows[1:]] == [str(kept.pk)]
    assert rows[1][-1] == "'-mb-1 crashed"
    assert admin_client.get(reverse("api-event-export"), {"server": "x"}).status_code == 400


def test_sessions_export_by_the_time_the_caller_asked(admin_client):
    server = ServerFactory(name="routing-a")
    early = SessionFactory(server=server, queued_at=at("2026-03-01T10:00:00"), caller_name="=cmd|' /C calc'!A0")
    SessionFactory(server=server, queued_at=at("2026-03-03T10:00:00"))

    api = rows_of(admin_client.get(reverse("api-session-export"), {"to": "2026-03-02"}))
    page = rows_of(admin_client.get(reverse("console-export-sessions"), {"to": "2026-03-02", "server": server.pk}))

    for rows in (api, page):
        assert [row[0] for row in rows[1:]] == [str(early.pk)]
        assert rows[1][rows[0].index("caller_name")] == "'=cmd|' /C calc'!A0"
        assert "caller_contact" not in rows[0]


def test_exports_are_for_whoever_may_read_the_list(agent_client, anonymous_client):
    assert agent_client.get(reverse("console-export-audit")).status_code == 403  # signed in, no role
    assert agent_client.get(reverse("api-audit-export")).status_code == 403
    assert anonymous_client.get(reverse("api-event-export")).status_code == 403
    assert anonymous_client.get(reverse("console-export-events")).status_code == 302


def test_served_by_the_asgi_server_the_export_streams_asynchronously(admin_user, three_days):
    """Under ASGI a synchronous iterator would be read whole into a list before the first
    byte (Django's fallback): the export hands an asynchronous one instead."""
    client = AsyncClient()

    async def export(name: str) -> tuple[bool, bytes]:
        await client.aforce_login(admin_user)
        response = await client.get(reverse(name), {"from": "2026-03-01"})
        return response.is_async, b"".join([chunk async for chunk in response.streaming_content])

    for name in ("console-export-audit", "api-audit-export"):
        is_async, body = async_to_sync(export)(name)

        assert is_async, name
        rows = list(csv.reader(io.StringIO(body.decode())))
        assert [int(row[0]) for row in rows[1:]] == [entry.pk for entry in reversed(three_days[1:])]


def _peak_bytes(consume) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        consume()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_twenty_thousand_audit_rows_stream_in_one_query_and_bounded_memory(admin_client):
    AuditEntry.objects.bulk_create(
        AuditEntry(
            actor_name="system:monitor",
            action=AuditAction.LINK_SWITCHOVER,
            object_type="failover.link",
            object_id=str(n),
            object_repr=f"routing-{n % 50} Media Blender link",
            reason="mb-1 is health down; switched to mb-2 " * 3,
            before={"connected": "mb-1", "epoch": n, "state": "connected"},
            after={"connected": "mb-2", "epoch": n + 1, "state": "connected"},
        )
        for n in range(20_000)
    )
    response = admin_client.get(reverse("api-audit-export"))
    assert isinstance(response, StreamingHttpResponse)
    lines = 0

    def stream() -> None:
        nonlocal lines
        for chunk in response.streaming_content:
            lines += chunk.count(b"\n")

    with CaptureQueriesContext(connection) as queries:
        streamed_peak = _peak_bytes(stream)
    loaded_peak = _peak_bytes(lambda: list(AuditEntry.objects.order_by("-created_at", "-id")))

    assert lines == 20_001  # the header and every row
    # One SELECT for the whole export: rows come from one cursor, CHUNK_SIZE at a time.
    audit_selects = [q["sql"] for q in queries.captured_queries if "failover_auditentry" in q["sql"]]
    assert len(audit_selects) == 1, audit_selects
    # The export holds a chunk, not the table: far below what loading the rows takes.
    assert streamed_peak < loaded_peak / 4, (streamed_peak, loaded_peak)
    assert streamed_peak < 12 * 2**20, streamed_peak
    assert CHUNK_SIZE < 20_000


def test_the_api_exports_errors_are_json(agent_client, admin_client, anonymous_client):
    for client, method, status in (
        (agent_client, "get", 403),
        (anonymous_client, "get", 403),
        (admin_client, "post", 405),
        (admin_client, "get", 400),
    ):
        response = getattr(client, method)(reverse("api-event-export") + ("?server=x" if status == 400 else ""))
        assert response.status_code == status
        assert response["Content-Type"] == "application/json", (status, response["Content-Type"])
        assert response.json()
