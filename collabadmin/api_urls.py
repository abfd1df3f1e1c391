"""The REST API under /api/v1/: each app's endpoints, the OpenAPI schema and its docs."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response


class JsonErrorsMixin:
    """Render errors as JSON on views whose success renderer is YAML or HTML.

    Without it an anonymous request for the schema gets its 403 as YAML, and one for the
    docs page as a bare HTML line; API clients expect JSON errors everywhere under /api/.
    """

    def handle_exception(self, exc: Exception) -> Response:
        request = self.request  # type: ignore[attr-defined]
        request.accepted_renderer = JSONRenderer()
        request.accepted_media_type = JSONRenderer.media_type
        return super().handle_exception(exc)  # type: ignore[misc]


class SchemaView(JsonErrorsMixin, SpectacularAPIView):
    # drf-spectacular serves the schema to anyone by default; nothing here is anonymous.
    permission_classes = [IsAuthenticated]


class DocsView(JsonErrorsMixin, SpectacularSwaggerSplitView):
    # The split view serves Swagger UI's start-up script as a separate same-origin file
    # (?script=) instead of an inline <script>: the Content Security Policy allows no inline
    # script (collabadmin/security.py).
    permission_classes = [IsAuthenticated]


@csrf_exempt
def not_found(request: HttpRequest, rest: str) -> JsonResponse:
    """Unknown paths under /api/v1/ answer like the rest of the API: JSON, not an HTML page.

    CSRF-exempt (it changes nothing): otherwise an unknown POST from a script, such as
    ``/api/v1/links/0.5/switchover/``, got Django's HTML "CSRF verification failed" page
    instead of this 404.
    """
    return JsonResponse({"detail": f"No API endpoint at /api/v1/{rest}."}, status=404)


urlpatterns = [
    # First: a caller's POST sessions/ is the busiest path; Django tries patterns in order
    # (the routers below would otherwise be walked in full on every caller's request).
    path("", include("sessions.api.urls")),
    path("", include("console.api_urls")),
    path("", include("failover.api.urls")),
    path("", include("configsync.api_urls")),
    path("schema/", SchemaView.as_view(), name="api-schema"),
    path("docs/", DocsView.as_view(url_name="api-schema"), name="api-docs"),
    # Last: anything not matched above.
    re_path(r"^(?P<rest>.*)$", not_found),
]
