"""Date ranges and CSV exports on the API's history lists (failover events, audit, sessions).

A viewset that mixes in ``DatedExportMixin`` (before ``ReadOnlyResourceViewSet``) gets:

- ``?from=`` and ``?to=`` on its list, the rules of common/date_range.py, applied to
  ``date_field``; a bad range is a 400 naming the parameter, like every other filter;
- ``GET .../export/``: the same filters and range, the whole list as CSV (``text/csv``),
  streamed from one database cursor (common/csv_export.py), never paginated.

Same permission as the list: whoever may read the rows may export them. Errors are JSON
whatever the client accepts (a CSV body that is really an error would be read as data).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import exceptions
from rest_framework.decorators import action
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from common.api_conventions import NOT_ALLOWED, VALIDATION_ERROR
from common.csv_export import Column, csv_response
from common.date_range import FORMAT_HINT, DateRangeError, date_range_from

EXPORT = "export"

DATE_RANGE_PARAMETERS = [
    OpenApiParameter(
        "from",
        OpenApiTypes.STR,
        description=f"Only rows at or after this moment: {FORMAT_HINT}; a date alone is that day's start (UTC).",
    ),
    OpenApiParameter(
        "to",
        OpenApiTypes.STR,
        description=f"Only rows at or before this moment: {FORMAT_HINT}; a date alone is that whole day (UTC).",
    ),
]
CSV_RESPONSE = OpenApiResponse(
    response=OpenApiTypes.STR,
    description="The rows as CSV with a header row, ISO 8601 UTC times, streamed (not paginated). "
    "Cells that start with = + - @ are prefixed with ' so spreadsheets do not run them.",
)


def within_requested_dates(queryset: QuerySet, params: Mapping[str, str], field: str) -> QuerySet:
    """``queryset`` narrowed to ``from``/``to`` on ``field``; a 400 naming the bad parameter."""
    try:
        dates = date_range_from(params)
    except DateRangeError as invalid:
        raise exceptions.ValidationError({name: [message] for name, message in invalid.errors.items()}) from None
    return dates.apply(queryset, field)


# The export's answers: CSV when it works, JSON errors as everywhere else (the defaults would
# take the CSV renderer's media type for them too).
EXPORT_RESPONSES = {
    (200, "text/csv"): CSV_RESPONSE,
    (400, "application/json"): VALIDATION_ERROR,
    (403, "application/json"): NOT_ALLOWED,
}


class CsvRenderer(BaseRenderer):
    """Announces ``text/csv`` for content negotiation; the export answers its own streamed body."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return b"" if data is None else str(data).encode()


class DatedExportMixin:
    date_field: str  # the ORM field ``from``/``to`` apply to
    export_columns: Sequence[Column]
    export_filename: str

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = super().filter_queryset(queryset)  # type: ignore[misc]
        if self.action == EXPORT and self.filter_serializer_class is not None:  # type: ignore[attr-defined]
            # The list's own filters (the base class applies them to the list only).
            queryset = queryset.filter(**self.validated_filters())  # type: ignore[attr-defined]
        if self.action in ("list", EXPORT):  # type: ignore[attr-defined]
            queryset = self.dated(queryset)
        return queryset

    def dated(self, queryset: QuerySet) -> QuerySet:
        return within_requested_dates(queryset, self.request.query_params, self.date_field)  # type: ignore[attr-defined]

    @action(detail=False, methods=["get"], url_path=EXPORT, renderer_classes=[CsvRenderer])
    def export(self, request: Request) -> Any:
        rows = self.filter_queryset(self.get_queryset())  # type: ignore[attr-defined]
        return csv_response(request, rows, self.export_columns, filename=self.export_filename)

    def handle_exception(self, exc: Exception) -> Response:
        # Every error of these endpoints is JSON, the export's included (a refused method or
        # permission comes before the action is known to be the export).
        response = super().handle_exception(exc)  # type: ignore[misc]
        self.request.accepted_renderer = JSONRenderer()  # type: ignore[attr-defined]
        self.request.accepted_media_type = JSONRenderer.media_type  # type: ignore[attr-defined]
        return response
