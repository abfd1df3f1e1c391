"""Shared live fragments leave compressed, compressed once per render.

The overview's fragment is about 200 KiB at 1,000 servers and every administrator watching
fetches it after a failover (docs/performance.md, issue 18). A render shared by every
watcher (``console/live_fragments.py``) is compressed once, here, and that copy is sent to
every browser that accepts gzip: the cost of compressing is per render, not per watcher.

This middleware sees the response after :class:`collabadmin.bidi.BidiControlMiddleware`
(it is listed before it), so what it compresses is the text every viewer would get; that
text depends only on the render, which is why the compressed copy is kept with it. A
delta (only the blocks a page lacks, console/live_blocks.py) is compressed once per render
and base the same way.
Only the shared fragments are compressed: they carry no secret (no CSRF token; their forms
post through the page's dialog, outside the fragment), so compression cannot leak one
(BREACH); every other response leaves as before.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers

from console.live_fragments import Render


class SharedFragmentGzipMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        render = getattr(response, "shared_render", None)
        delta = getattr(response, "shared_delta", None)  # (render, the base the page holds)
        if not (isinstance(render, Render) or delta) or response.has_header("Content-Encoding"):
            return response
        patch_vary_headers(response, ("Accept-Encoding",))
        if "gzip" not in request.headers.get("Accept-Encoding", "").lower():
            return response
        if delta:
            new, base = delta
            response.content = new.delta_from(base, "gzip")
        else:
            response.content = render.compressed(response.content)
        response["Content-Encoding"] = "gzip"
        response["Content-Length"] = str(len(response.content))
        return response
