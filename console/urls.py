"""The Administration desktop's pages and actions (each for a role permission:
``console.pages.requires_permission``), mounted at the site root by
``collabadmin.urls``: the overview at ``/`` and everything else under ``/console/``.
URL names have no namespace (``home``, ``console-*``): the templates name them so."""

from django.urls import path

from console.views import (
    actions,
    agents,
    exports,
    incidents,
    login,
    notifications,
    overview,
    queue,
    sessions,
    sync,
    timeline,
    tokens,
    wizards,
)

urlpatterns = [
    # Before django.contrib.auth.urls' own /login/ (collabadmin/urls.py): the same page,
    # refusing users without a role on the desktop.
    path("login/", login.ConsoleLoginView.as_view(), name="login"),
    path("", overview.overview, name="home"),
    path("partials/overview/", overview.overview_partial, name="overview-partial"),
    path("console/timeline/", timeline.timeline, name="console-timeline"),
    path("console/incidents/", incidents.incidents_page, name="console-incidents"),
    path("console/incidents/<int:event_id>/", incidents.incident_page, name="console-incident"),
    path("console/export/events.csv", exports.events_csv, name="console-export-events"),
    path("console/export/audit.csv", exports.audit_csv, name="console-export-audit"),
    path("console/export/sessions.csv", exports.sessions_csv, name="console-export-sessions"),
    path("console/wizards/", wizards.wizards_page, name="console-wizards"),
    path("console/wizards/start/", wizards.wizard_start_view, name="console-wizard-start"),
    path("console/wizards/<int:run_id>/", wizards.wizard_run_page, name="console-wizard-run"),
    path("console/sync/", sync.sync_page, name="console-sync"),
    path("console/sync/verify/", sync.sync_verify_view, name="console-sync-verify"),
    path("console/sync/apply/", sync.sync_run_view, name="console-sync-apply"),
    path("console/servers/<int:server_id>/drain/", actions.server_drain_view, name="console-server-drain"),
    path("console/links/<int:link_id>/switchover/", actions.link_switchover_view, name="console-link-switchover"),
    path("console/peers/<int:peer_id>/maintenance/", actions.peer_maintenance_view, name="console-peer-maintenance"),
    path(
        "console/alerts/<int:alert_id>/acknowledge/", actions.alert_acknowledge_view, name="console-alert-acknowledge"
    ),
    path("console/alerts/notifications/", notifications.notifications_page, name="console-notifications"),
    path(
        "console/alerts/notifications/channels/<int:channel_id>/test/",
        notifications.notification_test_view,
        name="console-notification-test",
    ),
    path("console/servers/<int:server_id>/silence/", actions.server_silence_view, name="console-server-silence"),
    path("console/servers/<int:server_id>/unsilence/", actions.server_unsilence_view, name="console-server-unsilence"),
    path("console/sessions/", sessions.sessions_page, name="console-sessions"),
    path("console/sessions/<uuid:session_id>/end/", sessions.session_end_view, name="console-session-end"),
    path("console/agents/", agents.agents_page, name="console-agents"),
    path("console/agents/<int:agent_id>/logout/", agents.agent_logout_view, name="console-agent-logout"),
    path("console/queue/", queue.queue_page, name="console-queue"),
    path("console/tokens/", tokens.tokens_page, name="console-tokens"),
    path("console/tokens/new/", tokens.token_create_view, name="console-token-create"),
    path("console/tokens/<int:token_id>/revoke/", tokens.token_revoke_view, name="console-token-revoke"),
]
