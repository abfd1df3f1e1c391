from django.apps import AppConfig


class FailoverConfig(AppConfig):
    name = "failover"
    verbose_name = "Failover"

    def ready(self) -> None:
        from failover import access_changes, auth_audit, role_groups

        access_changes.connect()
        auth_audit.connect()
        role_groups.connect(self)
