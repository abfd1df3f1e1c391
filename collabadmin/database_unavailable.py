"""HTML pages while the database is away: 503 with ``Retry-After``, not a 500.

A PostgreSQL restart or failover lasts seconds. The API already answers 503 with
``Retry-After`` then (``common.api_conventions``); this does the same for the pages and
fragments, which otherwise showed "Server error" (or, with ``DEBUG``, a traceback) to an
administrator watching a failover. The page is rendered without the request, so that
nothing in it (the log-in shown in the top bar, the messages) reaches for the database
that just failed.
"""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from common.api_conventions import DATABASE_RETRY_AFTER_S

log = logging.getLogger(__name__)


class DatabaseUnavailableMiddleware:
    """Turns a view's lost database connection into a 503 page that retries by itself."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        log.warning("database unavailable while serving %s: %s", request.path, exception)
        return database_unavailable_response()


def database_unavailable_response() -> HttpResponse:
    body = render_to_string("unavailable.html", {"retry_after": DATABASE_RETRY_AFTER_S})
    response = HttpResponse(body, status=503)
    response["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
    # Never cached: the next request, a second later, may well succeed.
    response["Cache-Control"] = "no-store"
    return response
