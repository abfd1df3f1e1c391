"""Every status of the failover app, as TextChoices (one place to read them all)."""

from django.db import models


class ServerRole(models.TextChoices):
    ROUTING = "routing", "Routing"
    AGENT = "agent", "Agent"


class Health(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    UP = "up", "Up"
    DOWN = "down", "Down"


class PeerKind(models.TextChoices):
    MEDIA_BLENDER = "media_blender", "Media Blender"
    ADMIN_WORKSTATION = "admin_workstation", "Admin Workstation"


class PeerPriority(models.IntegerChoices):
    PRIMARY = 1, "Primary"
    SECONDARY = 2, "Secondary"


class PeerConnection(models.TextChoices):
    CONNECTED = "connected", "Connected"
    STANDBY = "standby", "Standby"


class LinkState(models.TextChoices):
    CONNECTED = "connected", "Connected"
    SWITCHING = "switching", "Switching over"
    DOWN = "down", "Down"


class IcmSide(models.TextChoices):
    NONE = "", "Not connected"
    A = "A", "Side A"
    B = "B", "Side B"


class FailoverKind(models.TextChoices):
    AUTOMATIC = "automatic", "Automatic switchover"
    MANUAL = "manual", "Manual switchover"
    MAINTENANCE = "maintenance", "Maintenance drain"
    FAILBACK = "failback", "Fail back after stable"
    LINK_DOWN = "link_down", "Link down (no healthy peer)"
    LINK_RESTORED = "link_restored", "Link restored"
    SERVER_FAILED = "server_failed", "Server failed"
    SERVER_RECOVERED = "server_recovered", "Server recovered"
    SERVER_STOPPED = "server_stopped", "Server stopped while drained"


class Detection(models.TextChoices):
    """How the monitor learned of a failure (``FailoverEvent.detection``).

    The first four are facts seen at once: the kernel or the peer said so the moment it
    happened, so there is no detection time to measure. The others are decisions after
    probes went unanswered or failed for a while, and their detection time is measured.
    """

    CONNECTION_RESET = "connection_reset", "connection reset"
    CONNECTION_CLOSED = "connection_closed", "connection closed by the peer"
    CONNECTION_REFUSED = "connection_refused", "connection refused"
    PROTOCOL_ERROR = "protocol_error", "protocol error"
    TIMEOUT = "timeout", "probes timed out"
    HEARTBEAT = "heartbeat", "heartbeat silent"
    PROBE_FAILED = "probe_failed", "probes failed"


INSTANT_DETECTIONS = frozenset(
    {Detection.CONNECTION_RESET, Detection.CONNECTION_CLOSED, Detection.CONNECTION_REFUSED, Detection.PROTOCOL_ERROR}
)


class AlertKind(models.TextChoices):
    CONFIG_OUT_OF_SYNC = "config_out_of_sync", "Configuration may be out of sync"
    # The three below belong to a link (``Alert.link``): failover/services/link_alerts.py.
    LINK_DOWN = "link_down", "Link down"
    REDUNDANCY_LOST = "redundancy_lost", "Pair without redundancy"
    MB_WITHOUT_ICM = "mb_without_icm", "Media Blender without ICM"
    SERVER_FAILED = "server_failed", "Server failed"
    SERVER_DEGRADED = "server_degraded", "Server degraded"


class AlertSeverity(models.TextChoices):
    INFO = "info", "Information"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


# Severities in increasing order: a notification channel takes its minimum and above.
SEVERITY_RANK = {AlertSeverity.INFO: 0, AlertSeverity.WARNING: 1, AlertSeverity.CRITICAL: 2}


class NotificationKind(models.TextChoices):
    WEBHOOK = "webhook", "Webhook (JSON POST, signed)"
    EMAIL = "email", "E-mail"


class NotificationEvent(models.TextChoices):
    RAISED = "raised", "Alert raised"
    CLEARED = "cleared", "Alert cleared"
    TEST = "test", "Test notification"


class WizardKind(models.TextChoices):
    ADD_AGENT = "add_agent", "Add an agent"
    CHANGE_AGENT_SKILLS = "change_agent_skills", "Change an agent's skill groups"
    REMOVE_AGENT = "remove_agent", "Remove an agent"
    ADD_SKILL_GROUP = "add_skill_group", "Add a skill group"


class WizardState(models.TextChoices):
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    INTERRUPTED = "interrupted", "Interrupted"
    FAILED = "failed", "Failed"


class SyncRunState(models.TextChoices):
    VERIFYING = "verifying", "Verifying"
    IN_SYNC = "in_sync", "No differences"
    PLANNED = "planned", "Differences found"
    SYNCING = "syncing", "Syncing"
    COMPLETED = "completed", "Synced"
    INTERRUPTED = "interrupted", "Interrupted"
    FAILED = "failed", "Failed"
    STALE = "stale", "Stale plan"


# Runs in these states hold the per-server "one run at a time" slot.
SYNC_RUN_BUSY_STATES = (SyncRunState.VERIFYING, SyncRunState.SYNCING)


class SyncDirection(models.TextChoices):
    """Which side of a Verify and Sync plan row wins (the ICM by default)."""

    FROM_ICM = "from_icm", "ICM → this server"
    TO_ICM = "to_icm", "This server → ICM"


class ApiTokenState(models.TextChoices):
    """Whether an API token may be used (failover.models.api_tokens: never stored, derived)."""

    ACTIVE = "active", "Active"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"


class AuditAction(models.TextChoices):
    LINK_SWITCHOVER = "link.switchover", "Link switched over"
    PEER_MAINTENANCE_ON = "peer.maintenance_on", "Peer put into maintenance"
    PEER_MAINTENANCE_OFF = "peer.maintenance_off", "Peer taken out of maintenance"
    SERVER_FAILED = "server.failed", "Server declared failed"
    SERVER_DEGRADED = "server.degraded", "Server degraded (up but slow)"
    SERVER_DEGRADED_CLEARED = "server.degraded_cleared", "Server no longer degraded"
    SERVER_DRAINED = "server.drained", "Server put in drain (planned maintenance)"
    SERVER_UNDRAINED = "server.undrained", "Server taken out of drain"
    SERVER_STOPPED = "server.stopped", "Server stopped while drained"
    SESSION_REQUESTED = "session.requested", "Session requested"
    SESSION_ROUTED = "session.routed", "Session routed"
    SESSION_ACTIVATED = "session.activated", "Session activated"
    SESSION_REQUEUED = "session.requeued", "Session returned to the queue"
    SESSION_ADOPTED = "session.adopted", "Session adopted by another server"
    SESSION_PHONE_HUNG_UP = "session.phone_hung_up", "Caller hung up the phone"
    SESSION_PHONE_UNKNOWN = "session.phone_unknown", "Phone state no longer known"
    SESSION_ENDED = "session.ended", "Session ended"
    AGENT_STATE = "agent.state", "Agent state changed"
    AGENT_LOGGED_OUT = "agent.logged_out", "Agent logged out"
    AGENT_SETTINGS_CHANGED = "agent.settings_changed", "Agent's local settings changed"
    SERVER_CREATED = "server.created", "Server added"
    SERVER_CHANGED = "server.changed", "Server changed"
    PEER_CREATED = "peer.created", "Peer added"
    PEER_CHANGED = "peer.changed", "Peer changed"
    PEER_DELETED = "peer.deleted", "Peer deleted"
    WIZARD_STARTED = "wizard.started", "Wizard started"
    WIZARD_STEP = "wizard.step", "Wizard step"
    WIZARD_COMPLETED = "wizard.completed", "Wizard completed"
    WIZARD_FAILED = "wizard.failed", "Wizard failed"
    WIZARD_INTERRUPTED = "wizard.interrupted", "Wizard interrupted"
    SYNC_VERIFY = "sync.verify", "Verify run"
    SYNC_APPROVE = "sync.approve", "Sync plan approved"
    SYNC_APPLY = "sync.apply", "Sync run"
    SYNC_ROW = "sync.row", "Sync row applied"
    SYNC_REFUSED = "sync.refused", "Sync refused"
    SYNC_REPORT = "sync.report", "Sync finished"
    ALERT_RAISED = "alert.raised", "Alert raised"
    ALERT_CLEARED = "alert.cleared", "Alert cleared"
    ALERT_ACKNOWLEDGED = "alert.acknowledged", "Alert acknowledged"
    SERVER_SILENCED = "server.silenced", "Server's alerts silenced"
    SERVER_UNSILENCED = "server.unsilenced", "Server's silence ended early"
    POLICY_CHANGED = "policy.changed", "Policy changed"
    NOTIFICATION_TEST = "notification.test", "Test notification sent"
    NOTIFICATION_CHANNEL_CREATED = "notification_channel.created", "Notification channel added"
    NOTIFICATION_CHANNEL_CHANGED = "notification_channel.changed", "Notification channel changed"
    NOTIFICATION_CHANNEL_DELETED = "notification_channel.deleted", "Notification channel deleted"
    AUTH_LOGGED_IN = "auth.logged_in", "Logged in"
    AUTH_LOGGED_OUT = "auth.logged_out", "Logged out"
    AUTH_LOCKED_OUT = "auth.locked_out", "Log-in locked after repeated failures"
    API_TOKEN_CREATED = "api_token.created", "API token created"
    API_TOKEN_REVOKED = "api_token.revoked", "API token revoked"
