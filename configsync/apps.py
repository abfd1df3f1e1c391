from django.apps import AppConfig


class ConfigSyncConfig(AppConfig):
    """The configuration wizards and Verify and Sync (no models of its own: its runs are
    stored in the failover app's tables, where they always were)."""

    name = "configsync"
    verbose_name = "Configuration sync"

    def ready(self) -> None:
        from configsync.services import wizards
        from failover import hooks

        # A switchover of the Admin Workstation link interrupts running wizards.
        hooks.on_link_switched(wizards.after_admin_workstation_switched)
