"""API-wide behaviour: every error is JSON with a clear message and the right 4xx code.

The codes, the same on every endpoint:

- **400** the request itself is wrong (a missing or blank field, a bad value, a peer that
  is not part of the link); the body has one list of messages per field.
- **409** the request is well-formed but the current state refuses it (a stale epoch, a
  target peer that is down or in maintenance); ``{"detail": "...", ...}`` with whatever
  the client needs to decide again (for example ``current_epoch``).
- **503** nobody can serve it right now (no healthy routing server, or the database away:
  restarting, failing over), with ``Retry-After``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class Conflict(exceptions.APIException):
    """409: the request is valid, but the state of the resource refuses it now.

    Keyword arguments are added to the body beside ``detail`` as they are (numbers stay
    numbers), so a client can act on them without parsing the message.
    """

    status_code = 409
    default_detail = "The request conflicts with the current state of the resource."
    default_code = "conflict"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.extra = extra


class ServiceUnavailable(exceptions.APIException):
    """503 with ``Retry-After``: the request may succeed if repeated a little later."""

    status_code = 503
    default_detail = "The service is temporarily unavailable; retry later."
    default_code = "service_unavailable"

    def __init__(self, detail: str | None = None, *, retry_after: int) -> None:
        super().__init__(detail)
        # DRF's own handler turns ``wait`` into the Retry-After header (as for throttling).
        self.wait = retry_after


# The largest id (or epoch) the database can hold: a signed 64-bit integer (BigAutoField).
# Integer filters and fields that name rows say so, so a larger number is a 400 with a
# message instead of an overflow in the database driver (a 500).
MAX_ID = 2**63 - 1


class Pagination(LimitOffsetPagination):
    """``?limit=&offset=``; the default page is ``PAGE_SIZE`` and no page exceeds 1000 rows,
    so one request cannot make the server render the whole audit history.

    Malformed paging is a 400 naming the parameter: DRF's own class reads ``limit=null``,
    ``offset=abc``, a negative number or a repeated parameter as if it were absent, so a
    client with a bug silently got the first page (issue 15).
    """

    max_limit = 1000
    # The smallest value each parameter takes (``limit=0`` would be an empty page).
    MINIMUM = {"limit": 1, "offset": 0}

    def get_limit(self, request: Any) -> int:
        value = self._whole_number(request, self.limit_query_param)
        return self.default_limit if value is None else min(value, self.max_limit)

    def get_offset(self, request: Any) -> int:
        value = self._whole_number(request, self.offset_query_param)
        return 0 if value is None else value

    def _whole_number(self, request: Any, name: str) -> int | None:
        """The parameter's value, None when absent; a ValidationError (400) naming it when
        it is given twice, or is not a whole number of at least its minimum."""
        values = request.query_params.getlist(name)
        if not values:
            return None
        minimum = self.MINIMUM[name]
        if len(values) > 1:
            raise exceptions.ValidationError({name: [f"Give {name} once, not {len(values)} times."]})
        # ASCII digits only: int() would also take "+5", " 5" and other scripts' digits.
        if not (values[0].isascii() and values[0].isdigit()) or int(values[0]) < minimum:
            raise exceptions.ValidationError({name: [f"A whole number of at least {minimum} is required."]})
        return int(values[0])

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = self.MINIMUM[parameter["name"]]
            if parameter["name"] == self.limit_query_param:
                parameter["description"] = (
                    f"Number of results to return per page (default {self.default_limit}; "
                    f"a larger value than {self.max_limit} is read as {self.max_limit})."
                )
        return parameters


# How long a client waits before trying again when the database is away: a restarted
# database is back in a few seconds and the nodes reconnect within one of its return.
DATABASE_RETRY_AFTER_S = 2


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus Django's ValidationError (raised by services) as a 400 and the
    database away as a 503.

    Services validate with ``full_clean`` and raise Django's ValidationError; turning it
    into a 400 here keeps views thin and stops bad input from ever becoming a 500. A
    database that cannot be reached (or that ended the connection: a restart) is not the
    request's fault and will pass: 503 with Retry-After tells the client to try again,
    where a 500 says it failed. Usually nothing was committed (the transaction died with
    the connection); a connection that broke during or after the commit leaves it unknown,
    as for a request that got no answer, which no status could tell either.
    """
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("API request refused, the database is unavailable: %s", first_line(exc))
        exc = ServiceUnavailable(
            "The database is unavailable right now; retry shortly.", retry_after=DATABASE_RETRY_AFTER_S
        )
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        exc = exceptions.ValidationError(detail)
    if isinstance(exc, exceptions.AuthenticationFailed) and (scheme := getattr(exc, "www_authenticate", None)):
        # A refused API token (unknown, revoked, expired): 401 with the scheme to use, where
        # DRF would answer 403 because the session authentication is asked first.
        exc.status_code, exc.auth_header = 401, scheme
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, Conflict):
        response.data.update(exc.extra)
    return response


def first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def django_error_text(error: DjangoValidationError) -> str:
    """A Django ValidationError's messages as one sentence-like string (for a ``detail``)."""
    return " ".join(error.messages)


# --- Error bodies, for the OpenAPI schema ---------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    """The body of every error that is not about a particular field."""

    detail = serializers.CharField()


class ConflictSerializer(ErrorSerializer):
    current_epoch = serializers.IntegerField(
        required=False, help_text="Stale requests only: the link's epoch now; read the link again before retrying."
    )


VALIDATION_ERROR = OpenApiResponse(
    response=OpenApiTypes.OBJECT,
    description='Invalid input: one list of messages per field, for example {"reason": ["This field is required."]}.',
)
NOT_ALLOWED = OpenApiResponse(response=ErrorSerializer, description="Not logged in, or not allowed.")
NOT_FOUND = OpenApiResponse(response=ErrorSerializer, description="No such object.")
UNSUPPORTED_MEDIA_TYPE = OpenApiResponse(
    response=ErrorSerializer,
    description="The body is not JSON, a form or multipart, or cannot be read as its Content-Type says.",
)
CONFLICT = OpenApiResponse(
    response=ConflictSerializer,
    description="Refused by the current state (stale epoch, target down or in maintenance).",
)
RATE_LIMITED = OpenApiResponse(
    response=ErrorSerializer,
    description="Too many requests from this token (or, for creating a session, this address); "
    "repeat after the Retry-After header's seconds.",
)
UNAVAILABLE = OpenApiResponse(
    response=ErrorSerializer, description="No server can take it now; repeat after the Retry-After header's seconds."
)
