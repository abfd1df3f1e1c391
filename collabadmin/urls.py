"""Top-level URLs (docs/interfaces.md): admin, API, health probes, desktops."""

from django.contrib import admin
from django.urls import include, path

from collabadmin import metrics, probes
from sessions.urls import agent_patterns, caller_patterns

urlpatterns = [
    # First: the paths scripts and balancers call most. Django tries patterns in order, and
    # the desktops' include("") below would otherwise be walked in full on every API call
    # (5 % of a caller's request, py-spy). No pattern below starts with these prefixes.
    path("api/v1/", include("collabadmin.api_urls")),
    path("healthz", probes.healthz, name="healthz"),
    path("readyz", probes.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("", include("console.urls")),  # the Administration desktop: / and /console/...
    path("", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("agent/", include(agent_patterns)),
    path("request/", include(caller_patterns)),
]
