"""The OpenAPI schema class of the API's views (drf-spectacular's, plus the common errors).

Not in ``common.api_conventions``: that module is imported while DRF's settings load (the
pagination and exception handler), and drf-spectacular's ``AutoSchema`` imports DRF's
generic views, which would make the import circular.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema

from common.api_conventions import NOT_ALLOWED, NOT_FOUND, RATE_LIMITED, UNSUPPORTED_MEDIA_TYPE, VALIDATION_ERROR


class ApiSchema(AutoSchema):
    """Documents the errors every endpoint can answer, beside those its ``@extend_schema`` names.

    Every operation: **403** (not logged in, or not allowed: anonymous requests get DRF's
    "Authentication credentials were not provided.") and **429** (the API's rate limit per
    token, ``RATE_LIMIT_API``; ``Retry-After`` says when to repeat). Operations that take input (a body,
    or query filters): **400**; with a body, also **415** (a body DRF cannot parse as its
    Content-Type, such as a malformed multipart one). Operations on one object (``{id}`` in
    the path): **404**.
    An explicit entry in ``@extend_schema(responses=...)`` wins over these defaults.
    Set on the API's base views (``schema = ApiSchema()``).
    """

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        defaults = {"403": NOT_ALLOWED, "429": RATE_LIMITED}
        has_body = self.method in ("POST", "PUT", "PATCH")
        # A list pages (``limit``/``offset``, 400 when malformed) and may filter.
        pages = self.method == "GET" and self._is_list_view() and self._get_paginator() is not None
        if has_body or pages or self.get_override_parameters():
            defaults["400"] = VALIDATION_ERROR
        if has_body:
            defaults["415"] = UNSUPPORTED_MEDIA_TYPE
        if "{" in self.path:
            defaults["404"] = NOT_FOUND
        for code, response in defaults.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(response, code, direction=direction)
        return responses

    def _get_parameters(self) -> list[dict[str, Any]]:
        """A list's query filters also take a blank value, meaning "no filter" (what an empty
        HTML ``<select>`` sends; failover/api/views.py), so the schema says so."""
        parameters = super()._get_parameters()
        # A list's CSV export (common/api_exports.py) takes the list's filters.
        exports_a_list = getattr(self.view, "action", None) == "export"
        if not (self.method == "GET" and (self._is_list_view() or exports_a_list)):
            return parameters
        for parameter in parameters:
            if parameter["in"] != "query" or parameter["name"] in BLANK_NOT_ALLOWED:
                continue
            parameter["schema"] = {"anyOf": [parameter["schema"], {"type": "string", "maxLength": 0}]}
            described = parameter.get("description", "").rstrip(".")
            parameter["description"] = f"{described}. Blank: no filter.".lstrip(". ")
        return parameters


# Query parameters that are not filters: paging refuses a blank value (collabadmin/api.py).
BLANK_NOT_ALLOWED = {"limit", "offset"}
