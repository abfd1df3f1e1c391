"""Top-level URLs (docs/interfaces.md): admin, API, health probes, desktops."""

from django.contrib import admin
from django.http import HttpRequest, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path
from django.views.decorators.http import require_GET

from collabadmin import metrics, probes
from sessions.urls import agent_patterns, caller_patterns


@require_GET
def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    """Browsers ask for ``/favicon.ico`` on pages that name no icon (the Django admin's); it
    was a 404 on every page view, logged twice. Our pages link the icon themselves."""
    return HttpResponsePermanentRedirect(static("favicon.svg"))


urlpatterns = [
    # First: the paths scripts and balancers call most. Django tries patterns in order, and
    # the desktops' include("") below would otherwise be walked in full on every API call
    # (5 % of a caller's request, py-spy). No pattern below starts with these prefixes.
    path("api/v1/", include("collabadmin.api_urls")),
    path("healthz", probes.healthz, name="healthz"),
    path("readyz", probes.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("favicon.ico", favicon, name="favicon"),
    path("", include("console.urls")),  # the Administration desktop: / and /console/...
    path("", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("agent/", include(agent_patterns)),
    path("request/", include(caller_patterns)),
]
