"""A request id for every HTTP request: on its log lines and in its ``X-Request-ID`` header.

A client or a proxy in front may send ``X-Request-ID`` (a short token: letters, digits,
``.``, ``_``, ``-``); it is kept, so one id follows a request through every hop. Otherwise
a new one is made. The id is in ``REQUEST_ID`` (collabadmin/logging.py) while the request
is handled, so every JSON log line written meanwhile carries it, and on the response.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

from collabadmin.logging import REQUEST_ID

HEADER = "X-Request-ID"
_ACCEPTED = re.compile(r"[A-Za-z0-9._-]{1,64}")


def accepted_or_new(given: str) -> str:
    """The request id a client sent, if it is a short token; else a new one."""
    return given if _ACCEPTED.fullmatch(given) else uuid.uuid4().hex


def _request_id(request: HttpRequest) -> str:
    return accepted_or_new(request.headers.get(HEADER, ""))


@sync_and_async_middleware
def request_id_middleware(get_response: Callable) -> Callable:
    # Both flavours: under ASGI an async-only chain is not adapted to a thread for it.
    if iscoroutinefunction(get_response):

        async def middleware_async(request: HttpRequest) -> HttpResponseBase:
            request.request_id = _request_id(request)
            token = REQUEST_ID.set(request.request_id)
            try:
                response = await get_response(request)
            finally:
                REQUEST_ID.reset(token)
            response[HEADER] = request.request_id
            return response

        return middleware_async

    def middleware(request: HttpRequest) -> HttpResponseBase:
        request.request_id = _request_id(request)
        token = REQUEST_ID.set(request.request_id)
        try:
            response = get_response(request)
        finally:
            REQUEST_ID.reset(token)
        response[HEADER] = request.request_id
        return response

    return middleware


__all__ = ["HEADER", "accepted_or_new", "request_id_middleware"]
