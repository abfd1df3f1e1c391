from django.apps import AppConfig


class CollabSessionsConfig(AppConfig):
    name = "sessions"
    # django.contrib.sessions already owns the label "sessions".
    label = "collab_sessions"
    verbose_name = "Collaboration sessions"
