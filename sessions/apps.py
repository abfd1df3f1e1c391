from django.apps import AppConfig


class CollabSessionsConfig(AppConfig):
    name = "sessions"
    # django.contrib.sessions already owns the label "sessions".
    label = "collab_sessions"
    verbose_name = "Collaboration sessions"

    def ready(self) -> None:
        # What the failover engine's changes do to agents and sessions (failover/hooks.py:
        # the engine sits below this app and never imports it).
        from failover import hooks
        from sessions.services import followups, incident_snapshot, phone_tracking, routes, server_drain, server_failure

        # First the phone legs the old MB carried become unknown, then the new MB is caught up.
        hooks.on_link_switched(phone_tracking.after_link_switched)
        hooks.on_link_switched(followups.after_link_switched)
        hooks.on_server_failed(server_failure.end_work_of_failed_server)
        hooks.on_work_at_failure(incident_snapshot.open_sessions_at_failure)
        hooks.on_server_drain_changed(server_drain.after_server_drain_changed)
        hooks.on_media_blender_events(
            routes_confirmed=routes.session_confirm_routes, phone_hung_up=routes.session_phone_hung_up
        )
