"""Sessions endpoints under /api/v1/; URL names are prefixed ``api-`` like the schema's."""

from rest_framework.routers import SimpleRouter

from sessions.api import views

router = SimpleRouter()
router.register("agents", views.AgentViewSet, basename="api-agent")
router.register("sessions", views.SessionViewSet, basename="api-session")

urlpatterns = router.urls
