"""Bidirectional control characters never reach a page.

A caller's name, a topic, an agent's name from the ICM, a reason: any text a person or a
peer typed can carry the Unicode controls that reorder what follows them (U+202A-U+202E
embeddings and overrides, U+2066-U+2069 isolates, U+200E/U+200F and U+061C marks). Shown
as they are, "Ada\u202eevil" reads backwards and an audit line can be made to say
something else. Rather than trusting every template and every input path (the forms, the
API, the ICM through Verify and Sync, the Django admin), :class:`BidiControlMiddleware`
removes them from every HTML response, pages and live fragments alike; the stored text is
left as it was (the API returns it, JSON-escaped by clients that care).
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from common.bidi_controls import CONTROLS, without_controls

__all__ = ["CONTROLS", "BidiControlMiddleware", "without_controls"]


class BidiControlMiddleware:
    """Remove bidirectional control characters from every UTF-8 HTML response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        content_type = response.get("Content-Type", "")
        if response.streaming or not content_type.startswith("text/html") or "utf-8" not in content_type.lower():
            return response
        content = response.content
        # A live fragment shared by many watchers (console/live_fragments.py) is scanned once.
        render = getattr(response, "shared_render", None)
        cleaned = render.derived("bidi", content, without_controls) if render else without_controls(content)
        if cleaned is not content:
            response.content = cleaned
            if response.has_header("Content-Length"):
                response["Content-Length"] = str(len(response.content))
        return response
