"""The overview's charts: the pure functions that turn rows into SVG points and sentences
(failover/charts.py), and the charts as the overview page shows them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from console.views import overview
from failover import charts
from failover.choices import FailoverKind
from sessions.models import SessionSample
from tests.factories import FailoverEventFactory, ServerFactory

NOW = datetime(2026, 11, 25, 14, 30, tzinfo=UTC)


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2026, 11, 25, hour, minute, second, tzinfo=UTC)


# --- Pure functions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "top"),
    [(0, 4), (3, 4), (4, 4), (5, 10), (10, 10), (11, 20), (21, 50), (51, 100), (101, 200), (999, 1000)],
)
def test_the_count_axis_ends_on_a_round_even_number(value, top):
    assert charts.nice_ceiling(value) == top


def test_points_become_polylines_broken_where_samples_are_missing():
    frame = charts.Frame()  # plot from x 34 to 472, y 142 (zero) to 10 (top)
    start = at(14, 0)
    points = [(start, 0), (start + timedelta(seconds=10), 10), (start + timedelta(seconds=100), 20)]

    segments = charts.polyline_segments(
        points, start=start, end=start + timedelta(seconds=100), top_value=20, frame=frame
    )

    # The 90 s silence breaks the line; the lone last point is drawn as a short dash.
    assert segments == ["34,142 77.8,76", "470,10 472,10"]


def test_the_peak_is_the_highest_value_first_reached():
    assert charts.peak([(at(14, 0), 3), (at(14, 5), 12), (at(14, 9), 12), (at(14, 10), 4)]) == (at(14, 5), 12)
    assert charts.peak([]) is None


def samples(*rows: tuple[datetime, int, int]) -> list[dict]:
    return [{"at": when, "queued": queued, "active": active} for when, queued, active in rows]


def test_the_activity_summary_gives_the_latest_figures_and_the_peaks():
    chart = charts.activity_chart(
        samples((at(14, 0), 2, 4), (at(14, 5), 12, 6), (at(14, 10), 7, 9), (at(14, 29, 55), 3, 5)), now=NOW
    )

    assert chart.summary == "Queue depth now 3, peak 12 at 14:05 UTC; active sessions now 5, peak 9 at 14:10 UTC."
    assert chart.top_value == 20
    assert [line.label for line in chart.grid] == ["0", "10", "20"]
    assert not chart.empty


def test_a_stale_latest_sample_is_given_with_its_time():
    chart = charts.activity_chart(samples((at(14, 20), 6, 1), (at(14, 28), 3, 2)), now=NOW)

    assert chart.summary.startswith("Queue depth 3 at 14:28 UTC (no newer sample), peak 6 at 14:20 UTC; ")


def test_samples_outside_the_last_hour_are_left_out():
    chart = charts.activity_chart(samples((at(13, 29), 50, 50), (at(14, 29, 50), 1, 2)), now=NOW)

    assert "peak 1 at 14:29 UTC" in chart.summary
    assert chart.top_value == 4


def test_the_activity_table_gives_the_peaks_of_each_five_minutes():
    chart = charts.activity_chart(samples((at(13, 31), 2, 1), (at(13, 33), 5, 0), (at(14, 29), 1, 8)), now=NOW)

    assert chart.table_head == ["5 minutes from (UTC)", "Queue depth, peak", "Active sessions, peak"]
    assert len(chart.table_rows) == 12
    assert chart.table_rows[0] == ["13:30", "5", "1"]
    assert chart.table_rows[1] == ["13:35", "—", "—"]
    assert chart.table_rows[-1] == ["14:25", "1", "8"]


def test_without_samples_the_chart_says_so():
    chart = charts.activity_chart([], now=NOW)

    assert chart.empty
    assert chart.summary == "No samples in the last hour: the Celery beat records one every 10 seconds."
    assert all(series.segments == [] for series in chart.series)


def test_failovers_are_counted_per_hour_unplanned_and_planned_stacked():
    rows = [
        (at(14, 0), FailoverKind.AUTOMATIC, 2),
        (at(14, 0), FailoverKind.MANUAL, 1),
        (at(10, 0), FailoverKind.LINK_DOWN, 1),
        (at(10, 0), FailoverKind.LINK_RESTORED, 5),  # a recovery, not a failover
        (NOW - timedelta(hours=30), FailoverKind.AUTOMATIC, 9),  # before the window
    ]

    chart = charts.failover_chart(rows, now=NOW)

    assert chart.summary == (
        "4 failovers in the last 24 hours: 3 unplanned, 1 planned; the most, 3, in the hour from 14:00 UTC."
    )
    assert len(chart.bars) == len(chart.table_rows) == 24
    assert chart.table_rows[0] == ["15:00", "0", "0"]  # yesterday 15:00, the first hour of the window
    assert chart.table_rows[-1] == ["14:00", "2", "1"]
    assert chart.table_rows[-5] == ["10:00", "1", "0"]
    # Axis 0..4: two unplanned from y 142 up to 76, one planned stacked on top up to 43.
    last = chart.bars[-1]
    assert last.stacks == [
        {"key": "unplanned", "y": 76.0, "height": 66.0},
        {"key": "planned", "y": 43.0, "height": 33.0},
    ]
    assert last.label == "14:00–15:00 UTC: 2 unplanned, 1 planned"
    assert chart.bars[0].stacks == []


def test_a_day_without_failovers_says_so():
    chart = charts.failover_chart([], now=NOW)

    assert chart.summary == "No failovers in the last 24 hours."
    assert chart.empty


# --- On the overview --------------------------------------------------------------------------------


def visible_text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.mark.django_db
def test_the_overview_draws_both_charts_with_their_text_alternatives(admin_client):
    now = timezone.now()
    peak_at = now - timedelta(minutes=25)
    for when, queued, active in (
        (now - timedelta(minutes=40), 2, 1),
        (peak_at, 12, 9),
        (now - timedelta(seconds=5), 3, 5),
    ):
        SessionSample.objects.create(at=when, queued=queued, in_transit=0, active=active)
    SessionSample.objects.create(at=now - timedelta(hours=3), queued=99, active=99)  # older than the hour
    server = ServerFactory(name="routing-a")
    FailoverEventFactory(server=server, kind=FailoverKind.AUTOMATIC, detected_at=now - timedelta(minutes=1))
    FailoverEventFactory(server=server, kind=FailoverKind.MAINTENANCE, detected_at=now - timedelta(hours=5))
    FailoverEventFactory(server=server, kind=FailoverKind.AUTOMATIC, detected_at=now - timedelta(hours=30))

    html = admin_client.get("/").content.decode()

    clock = f"{peak_at:%H:%M}"
    activity = f"Queue depth now 3, peak 12 at {clock} UTC; active sessions now 5, peak 9 at {clock} UTC."
    assert f'<desc id="chart-activity-desc">{activity}</desc>' in html
    assert f'<figcaption class="chart-summary small">{activity}</figcaption>' in html
    assert 'role="img" aria-labelledby="chart-activity-title chart-activity-desc"' in html
    assert '<title id="chart-activity-title">Queue depth and active sessions, last hour</title>' in html
    assert "2 failovers in the last 24 hours: 1 unplanned, 1 planned" in html
    assert 'role="img" aria-labelledby="chart-failovers-title chart-failovers-desc"' in html
    # The figures as a table for screen readers, and drawn as lines and bars.
    assert "Queue depth and active sessions, last hour: the figures" in visible_text(html)
    assert html.count("<polyline ") >= 2
    assert 'class="chart-bar-unplanned"' in html
    assert 'class="chart-bar-planned"' in html
    # The Content Security Policy forbids inline styles: colours come from classes.
    assert " style=" not in html


@pytest.mark.django_db
def test_the_charts_are_part_of_the_live_fragment(admin_client):
    SessionSample.objects.create(at=timezone.now(), queued=4, active=1)

    fragment = admin_client.get("/partials/overview/").content.decode()

    assert 'data-region="charts"' in fragment
    assert "Queue depth now 4, peak 4" in fragment


@pytest.mark.django_db
def test_each_chart_is_one_query(django_assert_num_queries):
    now = timezone.now()
    SessionSample.objects.bulk_create(SessionSample(at=now - timedelta(seconds=10 * i), queued=i) for i in range(360))
    server = ServerFactory(name="routing-a")
    for hours in range(24):
        FailoverEventFactory(server=server, detected_at=now - timedelta(hours=hours))

    with django_assert_num_queries(1):
        activity = overview.activity_chart(now)
    with django_assert_num_queries(1):
        failovers = overview.failover_chart(now)

    assert activity.series[0].now == 0
    assert failovers.summary.startswith("24 failovers in the last 24 hours: 24 unplanned, 0 planned")
