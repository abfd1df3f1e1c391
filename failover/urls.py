"""The Administration desktop's pages and actions (staff only), included at the site root."""

from django.urls import path

from failover.views import actions, overview

urlpatterns = [
    path("", overview.overview, name="home"),
    path("partials/overview/", overview.overview_partial, name="overview-partial"),
    path("console/links/<int:link_id>/switchover/", actions.link_switchover_view, name="console-link-switchover"),
    path("console/peers/<int:peer_id>/maintenance/", actions.peer_maintenance_view, name="console-peer-maintenance"),
]
