"""CSV exports, streamed: rows are written as the database cursor yields them, so a year
of history leaves in constant memory (``QuerySet.iterator(chunk_size=...)``, never a list).

Served by the ASGI server (production: uvicorn), the lines go out through an asynchronous
iterator that pulls a batch at a time from the same generator in the request's thread (where
its database cursor lives): Django would otherwise read a synchronous iterator to the end
into a list before sending the first byte. Under WSGI and the test client, the generator is
handed over as it is.

Every cell is text a spreadsheet cannot run: one that starts with ``= + - @`` (or a tab or
carriage return, which some spreadsheets skip before reading a formula) is prefixed with
``'`` (CSV injection, OWASP). Times are ISO 8601 in UTC (``2026-03-01T08:30:00.123456Z``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse

# Rows fetched from the database at a time: enough to keep round trips few, small enough
# that the memory held stays a few megabytes whatever the export's length.
CHUNK_SIZE = 2000
# Lines handed from the request's thread to the event loop at a time under ASGI.
LINES_PER_BATCH = 500
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

Column = tuple[str, Callable[[Any], Any]]  # (header, the cell of a row)


def iso_utc(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def cell(value: Any) -> str:
    """One value as safe CSV text."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)  # a number is data, "-3" is not a formula
    text = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class _Echo:
    """A file-like object whose ``write`` hands back the line: csv.writer without a buffer."""

    def write(self, value: str) -> str:
        return value


def csv_lines(rows: Iterable[Any], columns: Sequence[Column]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow([header for header, _ in columns])
    for row in rows:
        yield writer.writerow([cell(value_of(row)) for _, value_of in columns])


def streamed_rows(rows: QuerySet) -> Iterator[Any]:
    """The queryset read in chunks by one cursor, never cached on the queryset."""
    return rows.iterator(chunk_size=CHUNK_SIZE)


async def in_batches(lines: Iterator[str]) -> AsyncIterator[str]:
    """``lines`` for an async server, ``LINES_PER_BATCH`` at a time, each batch read in the
    request's own thread (thread-sensitive: the cursor belongs to that thread's connection)."""
    next_batch = sync_to_async(lambda: "".join(islice(lines, LINES_PER_BATCH)), thread_sensitive=True)
    while batch := await next_batch():
        yield batch


def csv_response(
    request: HttpRequest, rows: QuerySet, columns: Sequence[Column], *, filename: str
) -> StreamingHttpResponse:
    lines = csv_lines(streamed_rows(rows), columns)
    # A REST framework Request wraps Django's: what the server handed in decides.
    served_by_asgi = isinstance(getattr(request, "_request", request), ASGIRequest)
    content = in_batches(lines) if served_by_asgi else lines
    response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response
