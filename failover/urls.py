"""The Administration desktop's pages and actions (staff only), included at the site root."""

from django.urls import path

from failover.views import actions, overview, sync, timeline, wizards

urlpatterns = [
    path("", overview.overview, name="home"),
    path("partials/overview/", overview.overview_partial, name="overview-partial"),
    path("console/timeline/", timeline.timeline, name="console-timeline"),
    path("console/wizards/", wizards.wizards_page, name="console-wizards"),
    path("console/wizards/start/", wizards.wizard_start_view, name="console-wizard-start"),
    path("console/wizards/<int:run_id>/", wizards.wizard_run_page, name="console-wizard-run"),
    path("console/sync/", sync.sync_page, name="console-sync"),
    path("console/sync/verify/", sync.sync_verify_view, name="console-sync-verify"),
    path("console/sync/apply/", sync.sync_run_view, name="console-sync-apply"),
    path("console/links/<int:link_id>/switchover/", actions.link_switchover_view, name="console-link-switchover"),
    path("console/peers/<int:peer_id>/maintenance/", actions.peer_maintenance_view, name="console-peer-maintenance"),
]
