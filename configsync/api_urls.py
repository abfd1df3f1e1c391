"""Configuration sync endpoints under /api/v1/: the wizards and the Verify and Sync runs."""

from rest_framework.routers import SimpleRouter

from configsync import api

# SimpleRouter: every app adds its routes under the same /api/v1/ prefix (see failover/api/urls.py).
router = SimpleRouter()
router.register("wizards", api.WizardRunViewSet, basename="api-wizard")
router.register("sync-runs", api.SyncRunViewSet, basename="api-sync-run")

urlpatterns = router.urls
