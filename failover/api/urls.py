"""Failover endpoints under /api/v1/; URL names are prefixed ``api-`` like the schema's."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from failover.api import notifications, tokens, views

# SimpleRouter, not DefaultRouter: each app adds its routes to the same /api/v1/ prefix,
# and DefaultRouter's per-router root views would collide there.
router = SimpleRouter()
router.register("servers", views.ServerViewSet, basename="api-server")
router.register("alerts", views.AlertViewSet, basename="api-alert")
router.register("peers", views.PeerViewSet, basename="api-peer")
router.register("links", views.LinkViewSet, basename="api-link")
router.register("events", views.FailoverEventViewSet, basename="api-event")
router.register("audit", views.AuditEntryViewSet, basename="api-audit")
router.register("notification-channels", notifications.NotificationChannelViewSet, basename="api-notification-channel")
router.register("tokens", tokens.ApiTokenViewSet, basename="api-token")
router.register(
    "notification-deliveries", notifications.NotificationDeliveryViewSet, basename="api-notification-delivery"
)

urlpatterns = [
    path("policy/", views.PolicyView.as_view(), name="api-policy"),
    *router.urls,
]
