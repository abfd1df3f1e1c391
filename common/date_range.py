"""A date range from a request's ``from`` and ``to``: the same rules on pages, exports and API.

Each bound is an ISO 8601 date (``2026-03-01``) or date and time (``2026-03-01T08:30:00Z``,
with an offset or ``Z``; without one, UTC). A date alone for ``from`` means that day's
start; for ``to``, that whole day (inclusive): ``from=2026-03-01&to=2026-03-01`` is one day.
Dates are days in UTC, as the exports' timestamps are. ``from`` after ``to`` is an error,
as is anything that is not a date: a clear message rather than an empty list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import QuerySet
from django.utils.dateparse import parse_date, parse_datetime

FROM, TO = "from", "to"
DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FORMAT_HINT = "a date (2026-03-01) or a date and time in ISO 8601 (2026-03-01T08:30:00Z)"


class DateRangeError(ValueError):
    """Bad bounds: ``errors`` maps each parameter (``from``, ``to``) to its message."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class DateRange:
    """``start`` inclusive, ``before`` exclusive; either may be open (None)."""

    start: datetime | None = None
    before: datetime | None = None
    # What was asked, as typed: the form shows it back.
    from_text: str = ""
    to_text: str = ""

    @property
    def active(self) -> bool:
        return self.start is not None or self.before is not None

    def apply(self, rows: QuerySet, field: str) -> QuerySet:
        """``rows`` whose ``field`` (a date-time) falls in the range."""
        if self.start is not None:
            rows = rows.filter(**{f"{field}__gte": self.start})
        if self.before is not None:
            rows = rows.filter(**{f"{field}__lt": self.before})
        return rows


def _parse(text: str, *, end: bool) -> datetime:
    """One bound as an aware UTC date-time; a date's end is the next day's start."""
    try:
        # A date alone first: parse_datetime would read it as that day's midnight.
        day = parse_date(text) if DATE_ONLY.match(text) else None
        moment = None if day is not None else parse_datetime(text)
    except ValueError as invalid:  # well-formed but impossible: 2026-02-30
        raise ValueError(f"{text!r} is not a real date: {invalid}.") from invalid
    if moment is not None:
        moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        # A moment given as ``to`` is included: the range ends just after it.
        return moment.astimezone(UTC) + (timedelta(microseconds=1) if end else timedelta())
    if day is not None:
        return datetime.combine(day + timedelta(days=1) if end else day, time.min, tzinfo=UTC)
    raise ValueError(f"{text[:40]!r} is not {FORMAT_HINT}.")


def _check_year(value: date | datetime) -> None:
    if not 1 <= value.year <= 9998:
        raise ValueError("Give a year between 1 and 9998.")


def date_range_from(params: Mapping[str, str]) -> DateRange:
    """The range ``params`` asks for (blank bounds are open); raises ``DateRangeError``."""
    texts = {name: (params.get(name) or "").strip() for name in (FROM, TO)}
    bounds: dict[str, datetime | None] = {FROM: None, TO: None}
    errors: dict[str, str] = {}
    for name, text in texts.items():
        if not text:
            continue
        try:
            bounds[name] = _parse(text, end=name == TO)
            _check_year(bounds[name])
        except (ValueError, OverflowError) as invalid:
            errors[name] = str(invalid) if str(invalid) else f"Not {FORMAT_HINT}."
    if not errors and bounds[FROM] is not None and bounds[TO] is not None and bounds[FROM] >= bounds[TO]:
        errors[TO] = "The end of the range is before its start: 'to' must not be earlier than 'from'."
    if errors:
        raise DateRangeError(errors)
    return DateRange(start=bounds[FROM], before=bounds[TO], from_text=texts[FROM], to_text=texts[TO])
