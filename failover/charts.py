"""The overview's charts as plain data for an inline SVG: pure functions, no queries.

The view runs one query per chart and hands the rows to :func:`activity_chart` (queue
depth and active sessions over the last hour, from ``SessionSample`` rows) or
:func:`failover_chart` (failovers per hour over the last day); the template
``console/_charts.html`` draws what they return. Coordinates are in the SVG's own user
units (:class:`Frame`), so the drawing scales with its box; colours come from CSS classes.

Every chart carries its text alternative: a one-sentence ``summary`` (shown under the
chart and used as the SVG's description) and the table of its figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from failover.choices import FailoverKind

ACTIVITY_WINDOW = timedelta(hours=1)
#: A longer silence between two samples (the beat task stopped) breaks the line.
SAMPLE_GAP = timedelta(seconds=35)
#: The activity table sums the hour up in buckets of this size.
ACTIVITY_TABLE_STEP = timedelta(minutes=5)
FAILOVER_HOURS = 24

#: What the failover chart counts: unplanned (the product reacting to a failure) and
#: planned (an administrator's or a policy's switchover). Restorations are not failovers.
UNPLANNED_KINDS = (FailoverKind.AUTOMATIC, FailoverKind.LINK_DOWN, FailoverKind.SERVER_FAILED)
PLANNED_KINDS = (FailoverKind.MANUAL, FailoverKind.MAINTENANCE, FailoverKind.FAILBACK)
FAILOVER_KINDS = UNPLANNED_KINDS + PLANNED_KINDS


@dataclass(frozen=True)
class Frame:
    """The SVG's viewBox and the plot area inside it (room left for the axis labels)."""

    width: int = 480
    height: int = 168
    left: int = 34
    right: int = 8
    top: int = 10
    bottom: int = 26

    @property
    def plot_width(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_height(self) -> float:
        return self.height - self.top - self.bottom

    @property
    def baseline(self) -> float:
        return self.top + self.plot_height

    @property
    def plot_right(self) -> float:
        return self.width - self.right

    @property
    def y_label_x(self) -> float:
        """Where the count labels end, left of the plot."""
        return self.left - 6

    @property
    def x_label_y(self) -> float:
        """The baseline of the time labels, under the plot."""
        return self.height - 8

    @property
    def view_box(self) -> str:
        return f"0 0 {self.width} {self.height}"

    def x(self, fraction: float) -> float:
        """The x of a fraction (0..1, clamped) of the plot's width."""
        return round(self.left + min(max(fraction, 0.0), 1.0) * self.plot_width, 1)

    def y(self, value: float, top_value: float) -> float:
        """The y of ``value`` on an axis from 0 (bottom) to ``top_value`` (top)."""
        share = 0.0 if top_value <= 0 else min(max(value / top_value, 0.0), 1.0)
        return round(self.baseline - share * self.plot_height, 1)


FRAME = Frame()


def nice_ceiling(value: float) -> int:
    """The top of a count axis: 4, 10, 20, 50, 100, 200, 500... at least ``value``.

    Each is even, so the middle grid line is a whole number too.
    """
    if value <= 4:
        return 4
    magnitude = 10
    while True:
        for step in (1, 2, 5):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10


def time_fraction(at: datetime, start: datetime, end: datetime) -> float:
    span = (end - start).total_seconds()
    return 0.0 if span <= 0 else (at - start).total_seconds() / span


def polyline_segments(
    points: Sequence[tuple[datetime, float]],
    *,
    start: datetime,
    end: datetime,
    top_value: float,
    frame: Frame = FRAME,
    max_gap: timedelta = SAMPLE_GAP,
) -> list[str]:
    """``points`` (oldest first) as SVG polyline ``points`` strings, one per unbroken run.

    A gap longer than ``max_gap`` between two points starts a new run, so missing samples
    are not drawn as a straight line. A run of one point becomes a short flat dash, so it
    stays visible.
    """
    runs: list[list[tuple[float, float]]] = []
    previous: datetime | None = None
    for at, value in points:
        if previous is None or at - previous > max_gap:
            runs.append([])
        runs[-1].append((frame.x(time_fraction(at, start, end)), frame.y(value, top_value)))
        previous = at
    segments = []
    for run in runs:
        if len(run) == 1:
            x, y = run[0]
            run = [(max(x - 2, frame.left), y), (x, y)]
        segments.append(" ".join(f"{x:g},{y:g}" for x, y in run))
    return segments


def peak(points: Iterable[tuple[datetime, int]]) -> tuple[datetime, int] | None:
    """The highest value and when it was first reached; None without points."""
    best: tuple[datetime, int] | None = None
    for at, value in points:
        if best is None or value > best[1]:
            best = (at, value)
    return best


def clock(at: datetime) -> str:
    """``14:05`` in the viewer's zone (``collabadmin/timezones.py``), like every time shown."""
    return timezone.localtime(at).strftime("%H:%M")


def zone(at: datetime) -> str:
    """The viewer's zone at ``at`` as the times show it (``CET``, ``UTC``)."""
    return timezone.localtime(at).tzname() or "UTC"


@dataclass
class GridLine:
    y: float
    label: str


@dataclass
class Tick:
    x: float
    label: str
    anchor: str = "middle"


@dataclass
class LineSeries:
    key: str
    label: str
    segments: list[str]
    now: int | None
    peak: tuple[datetime, int] | None


@dataclass
class Bar:
    x: float
    width: float
    label: str
    stacks: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Chart:
    """What ``console/_charts.html`` draws for one chart."""

    key: str
    title: str
    summary: str
    frame: Frame
    top_value: int
    grid: list[GridLine]
    ticks: list[Tick]
    legend: list[tuple[str, str]]
    table_head: list[str]
    table_rows: list[list[str]]
    series: list[LineSeries] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    empty: bool = False
    empty_text: str = ""


def grid_lines(top_value: int, frame: Frame = FRAME) -> list[GridLine]:
    """Three horizontal lines: 0, the middle and the top of the axis."""
    return [GridLine(frame.y(value, top_value), str(value)) for value in (0, top_value // 2, top_value)]


# --- Queue depth and active sessions over the last hour ------------------------------------------


def _series_sentence(label: str, series: LineSeries, latest_at: datetime, now: datetime) -> str:
    if series.now is None or series.peak is None:
        return ""
    peak_at, peak_value = series.peak
    if now - latest_at <= SAMPLE_GAP:
        latest = f"now {series.now}"
    else:  # the beat stopped: say how old the figure is
        latest = f"{series.now} at {clock(latest_at)} {zone(latest_at)} (no newer sample)"
    return f"{label} {latest}, peak {peak_value} at {clock(peak_at)} {zone(peak_at)}"


def activity_chart(samples: Sequence[Any], *, now: datetime, frame: Frame = FRAME) -> Chart:
    """Queue depth and active sessions over the hour before ``now``.

    ``samples``: rows with ``at``, ``queued`` and ``active`` (``SessionSample`` objects or
    dicts), oldest first, already limited to the window by the query.
    """
    rows = [_row(sample) for sample in samples]
    start = now - ACTIVITY_WINDOW
    rows = [row for row in rows if start <= row["at"] <= now]
    top_value = nice_ceiling(max((max(row["queued"], row["active"]) for row in rows), default=0))
    series = []
    for key, label in (("queued", "Queue depth"), ("active", "Active sessions")):
        points = [(row["at"], row[key]) for row in rows]
        series.append(
            LineSeries(
                key=key,
                label=label,
                segments=polyline_segments(points, start=start, end=now, top_value=top_value, frame=frame),
                now=points[-1][1] if points else None,
                peak=peak(points),
            )
        )
    if rows:
        latest_at = rows[-1]["at"]
        queued, active = series
        summary = (
            f"{_series_sentence('Queue depth', queued, latest_at, now)}; "
            f"{_series_sentence('active sessions', active, latest_at, now)}."
        )
    else:
        summary = "No samples in the last hour: the Celery beat records one every 10 seconds."
    ticks = [
        Tick(frame.x(fraction), label, "start" if fraction == 0 else "end" if fraction == 1 else "middle")
        for fraction, label in ((0, "−60 min"), (0.25, "−45"), (0.5, "−30"), (0.75, "−15"), (1, "now"))
    ]
    return Chart(
        key="activity",
        title="Queue depth and active sessions, last hour",
        summary=summary,
        frame=frame,
        top_value=top_value,
        grid=grid_lines(top_value, frame),
        ticks=ticks,
        legend=[("queued", "Queue depth"), ("active", "Active sessions")],
        table_head=[f"5 minutes from ({zone(now)})", "Queue depth, peak", "Active sessions, peak"],
        table_rows=_activity_table(rows, start),
        series=series,
        empty=not rows,
        empty_text="No samples yet",
    )


def _row(sample: Any) -> dict[str, Any]:
    if isinstance(sample, dict):
        return {"at": sample["at"], "queued": sample["queued"], "active": sample["active"]}
    return {"at": sample.at, "queued": sample.queued, "active": sample.active}


def _activity_table(rows: Sequence[dict[str, Any]], start: datetime) -> list[list[str]]:
    """The hour in 5-minute buckets: each bucket's highest queue depth and active count."""
    buckets = int(ACTIVITY_WINDOW / ACTIVITY_TABLE_STEP)
    peaks: list[tuple[int, int] | None] = [None] * buckets
    for row in rows:
        index = min(int((row["at"] - start) / ACTIVITY_TABLE_STEP), buckets - 1)
        queued, active = peaks[index] or (0, 0)
        peaks[index] = (max(queued, row["queued"]), max(active, row["active"]))
    table = []
    for index, values in enumerate(peaks):
        label = clock(start + index * ACTIVITY_TABLE_STEP)
        table.append([label, *(str(v) for v in values)] if values else [label, "—", "—"])
    return table


# --- Failovers per hour over the last day ----------------------------------------------------------


def hour_floor(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def failover_window_start(now: datetime) -> datetime:
    """The start of the first of the :data:`FAILOVER_HOURS` hourly bars (the last is the current hour)."""
    return hour_floor(now) - timedelta(hours=FAILOVER_HOURS - 1)


def hourly_failovers(rows: Iterable[tuple[datetime, str, int]], *, now: datetime) -> list[tuple[datetime, int, int]]:
    """(hour, kind, count) rows as one (hour, unplanned, planned) per hour of the window, zeros included."""
    start = failover_window_start(now)
    counts = {start + timedelta(hours=i): [0, 0] for i in range(FAILOVER_HOURS)}
    for hour, kind, n in rows:
        bucket = counts.get(hour_floor(hour))
        if bucket is None:
            continue
        if kind in UNPLANNED_KINDS:
            bucket[0] += n
        elif kind in PLANNED_KINDS:
            bucket[1] += n
    return [(hour, unplanned, planned) for hour, (unplanned, planned) in counts.items()]


def failover_chart(rows: Iterable[tuple[datetime, str, int]], *, now: datetime, frame: Frame = FRAME) -> Chart:
    """Failovers per hour over the last day, unplanned and planned stacked.

    ``rows``: (hour, kind, count) from one ``GROUP BY`` query over the window.
    """
    hours = hourly_failovers(rows, now=now)
    top_value = nice_ceiling(max((u + p for _, u, p in hours), default=0))
    slot = frame.plot_width / len(hours)
    gap = max(round(slot * 0.2, 1), 1.0)
    bars = []
    for index, (hour, unplanned, planned) in enumerate(hours):
        x = round(frame.left + index * slot + gap / 2, 1)
        bar = Bar(
            x=x,
            width=round(slot - gap, 1),
            label=f"{clock(hour)}–{clock(hour + timedelta(hours=1))} {zone(hour)}: {unplanned} unplanned, "
            f"{planned} planned",
        )
        base = 0
        for key, n in (("unplanned", unplanned), ("planned", planned)):
            if n:
                y_top = frame.y(base + n, top_value)
                bar.stacks.append({"key": key, "y": y_top, "height": round(frame.y(base, top_value) - y_top, 1)})
                base += n
        bars.append(bar)
    unplanned_total = sum(u for _, u, _ in hours)
    planned_total = sum(p for _, _, p in hours)
    total = unplanned_total + planned_total
    if total:
        busiest_hour, busiest_u, busiest_p = max(hours, key=lambda h: (h[1] + h[2], h[0]))
        summary = (
            f"{total} failover{'s' if total != 1 else ''} in the last 24 hours: {unplanned_total} unplanned, "
            f"{planned_total} planned; the most, {busiest_u + busiest_p}, in the hour from "
            f"{clock(busiest_hour)} {zone(busiest_hour)}."
        )
    else:
        summary = "No failovers in the last 24 hours."
    ticks = [
        Tick(round(frame.left + index * slot + slot / 2, 1), label)
        for index, label in ((0, "−24 h"), (6, "−18 h"), (12, "−12 h"), (18, "−6 h"), (len(hours) - 1, "now"))
    ]
    return Chart(
        key="failovers",
        title="Failovers per hour, last 24 hours",
        summary=summary,
        frame=frame,
        top_value=top_value,
        grid=grid_lines(top_value, frame),
        ticks=ticks,
        legend=[("unplanned", "Unplanned"), ("planned", "Planned")],
        table_head=[f"Hour from ({zone(now)})", "Unplanned", "Planned"],
        table_rows=[[clock(hour), str(u), str(p)] for hour, u, p in hours],
        bars=bars,
        empty=not total,
        empty_text="No failovers",
    )
