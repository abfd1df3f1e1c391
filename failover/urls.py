"""The Administration desktop's pages and actions (staff only), included at the site root."""

from django.urls import path

from failover import views

urlpatterns = [
    path("", views.overview, name="home"),
    path("partials/overview/", views.overview_partial, name="overview-partial"),
    path("console/links/<int:link_id>/switchover/", views.link_switchover_view, name="console-link-switchover"),
    path("console/peers/<int:peer_id>/maintenance/", views.peer_maintenance_view, name="console-peer-maintenance"),
]
