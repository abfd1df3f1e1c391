"""Who may do what: the product's permissions and the roles that bundle them.

One catalogue, read by the permission anchor model (``failover.models.access``), by the
migration that creates the roles' groups, by every view, API endpoint and WebSocket
consumer that checks a permission, and by the roles table in docs/operations.md (checked
by a test). Roles are cumulative: a supervisor may do all a viewer may, an administrator
all a supervisor may. The Django admin is for superusers only; a superuser has every
permission.

Permissions are checked by name (``user.has_perm(perm.name)``), never by ``is_staff``:
``is_staff`` only opens the Django admin's log-in, which the product reserves to superusers.
"""

from __future__ import annotations

from dataclasses import dataclass

# Every permission hangs on one table-less model of the failover app (Django keeps
# permissions per model); their full names are "failover.<codename>".
APP_LABEL = "failover"


@dataclass(frozen=True)
class Permission:
    codename: str
    description: str

    @property
    def name(self) -> str:
        """The name ``user.has_perm`` takes."""
        return f"{APP_LABEL}.{self.codename}"


VIEW_DESKTOP = Permission("view_desktop", "View the Administration desktop and read the API")
END_SESSIONS = Permission("end_sessions", "End collaboration sessions")
LOG_OUT_AGENTS = Permission("log_out_agents", "Log agents out")
SWITCH_OVER_LINKS = Permission("switch_over_links", "Switch links over")
SET_PEER_MAINTENANCE = Permission("set_peer_maintenance", "Put peers in and out of maintenance")
DRAIN_SERVERS = Permission("drain_servers", "Drain and undrain servers")
HANDLE_ALERTS = Permission("handle_alerts", "Acknowledge alerts and silence servers")
RUN_WIZARDS = Permission("run_wizards", "Run configuration wizards")
VERIFY_AND_SYNC = Permission("verify_and_sync", "Run Verify and Sync")
MANAGE_NOTIFICATIONS = Permission("manage_notifications", "Manage notification channels and send tests")
MANAGE_API_TOKENS = Permission("manage_api_tokens", "Manage every user's API tokens")
SET_FAILOVER_POLICY = Permission("set_failover_policy", "Change the failover policy")

PERMISSIONS: tuple[Permission, ...] = (
    VIEW_DESKTOP,
    END_SESSIONS,
    LOG_OUT_AGENTS,
    SWITCH_OVER_LINKS,
    SET_PEER_MAINTENANCE,
    DRAIN_SERVERS,
    HANDLE_ALERTS,
    RUN_WIZARDS,
    VERIFY_AND_SYNC,
    MANAGE_NOTIFICATIONS,
    MANAGE_API_TOKENS,
    SET_FAILOVER_POLICY,
)


@dataclass(frozen=True)
class Role:
    key: str  # seed_demo's user name, the docs' column
    group: str  # the Django group that carries it
    permissions: tuple[Permission, ...]


VIEWER = Role("viewer", "Viewer", (VIEW_DESKTOP,))
SUPERVISOR = Role("supervisor", "Supervisor", (*VIEWER.permissions, END_SESSIONS, LOG_OUT_AGENTS))
ADMINISTRATOR = Role(
    "administrator",
    "Administrator",
    (
        *SUPERVISOR.permissions,
        SWITCH_OVER_LINKS,
        SET_PEER_MAINTENANCE,
        DRAIN_SERVERS,
        HANDLE_ALERTS,
        RUN_WIZARDS,
        VERIFY_AND_SYNC,
        MANAGE_NOTIFICATIONS,
        MANAGE_API_TOKENS,
        SET_FAILOVER_POLICY,
    ),
)
ROLES: tuple[Role, ...] = (VIEWER, SUPERVISOR, ADMINISTRATOR)

SUPERUSER_COLUMN = "Superuser"
HELD, NOT_HELD = "yes", "·"


def roles_table_markdown() -> str:
    """What each role may do, as the Markdown table of docs/operations.md ("Roles"; a test
    checks the docs hold exactly this; ``manage.py roles_table`` prints it)."""
    columns = [role.group for role in ROLES] + [SUPERUSER_COLUMN]
    lines = [
        "| Permission | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for permission in PERMISSIONS:
        marks = [HELD if permission in role.permissions else NOT_HELD for role in ROLES] + [HELD]
        lines.append(f"| {permission.description} (`{permission.codename}`) | " + " | ".join(marks) + " |")
    lines.append("| The Django admin (`/admin/`) | " + " | ".join([NOT_HELD] * len(ROLES) + [HELD]) + " |")
    return "\n".join(lines) + "\n"
