"""The console's endpoints under /api/v1/: the status snapshot and the incident reports."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from console import api, api_incidents

router = SimpleRouter()
router.register("incidents", api_incidents.IncidentViewSet, basename="api-incident")

urlpatterns = [path("status/", api.StatusView.as_view(), name="api-status"), *router.urls]
