"""The console's endpoint under /api/v1/: the status snapshot."""

from django.urls import path

from console import api

urlpatterns = [path("status/", api.StatusView.as_view(), name="api-status")]
