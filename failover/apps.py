from django.apps import AppConfig


class FailoverConfig(AppConfig):
    name = "failover"
    verbose_name = "Failover"

    def ready(self) -> None:
        from failover import access, auth_audit

        access.connect()
        auth_audit.connect()
