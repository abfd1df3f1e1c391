"""Structured logs: one JSON object per line, easy to ship to any log collector.

Every process logs this way: the web nodes (Django and uvicorn's own loggers, configured
in ``settings.LOGGING``), the Celery worker and beat (``collabadmin/celery.py`` tells
Celery not to install its own handlers). A line logged while an HTTP request is handled
carries the request's ``request_id`` (collabadmin/request_id.py), as does Django's line
about a failed request.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

# The id of the HTTP request being handled in this context, set by RequestIdMiddleware.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is kept.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({key: value for key, value in vars(record).items() if key not in _STANDARD})
        # Django's own lines about a request (django.request: 404s, 500s) pass the request:
        # they are written after the middleware has returned, outside its context.
        request_id = getattr(getattr(record, "request", None), "request_id", None) or REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
