from django.apps import AppConfig


class FailoverConfig(AppConfig):
    name = "failover"
    verbose_name = "Failover"

    def ready(self) -> None:
        from failover import access, auth_audit, hooks
        from failover.services import wizards

        access.connect()
        auth_audit.connect()
        # A switchover of the Admin Workstation link interrupts running wizards.
        hooks.on_link_switched(wizards.after_admin_workstation_switched)
