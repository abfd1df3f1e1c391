"""Every status of the sessions app, as TextChoices."""

from django.db import models


class AgentState(models.TextChoices):
    LOGGED_OUT = "logged_out", "Logged out"
    NOT_READY = "not_ready", "Not ready"
    READY = "ready", "Ready"


class LogoutReason(models.TextChoices):
    NONE = "", "—"
    AGENT = "agent", "Agent logged out"
    ADMIN_FORCED = "admin_forced", "Forced by an administrator"
    SERVER_FAILED = "server_failed", "Server failed"


class SessionState(models.TextChoices):
    QUEUED = "queued", "Queued"
    IN_TRANSIT = "in_transit", "In transit"
    ACTIVE = "active", "Active"
    ENDED = "ended", "Ended"


# A session in one of these states is owned by an agent.
ROUTED_STATES = (SessionState.IN_TRANSIT, SessionState.ACTIVE)


class PhoneLeg(models.TextChoices):
    NONE = "none", "No phone leg"
    CONNECTED = "connected", "Connected"
    HUNG_UP = "hung_up", "Caller hung up"
    # The Media Blender that set the phone leg up was switched away from: no hang-up of
    # that call can reach the product any more (the new MB never heard of it).
    UNKNOWN = "unknown", "Phone state unknown"


class EndReason(models.TextChoices):
    NONE = "", "—"
    AGENT_ENDED = "agent_ended", "Agent ended"
    ADMIN_ENDED = "admin_ended", "Administrator ended"
    CALLER_LEFT = "caller_left", "Caller left"
    HANGUP_TIMEOUT = "hangup_timeout", "Ended after the caller hung up"
    SERVER_FAILED = "server_failed", "Server failed"
    SERVER_MAINTENANCE = "server_maintenance", "Ended for server maintenance"
    TRANSIT_FAILED = "transit_failed", "Transit failed"
    PHONE_UNTRACKED = "phone_untracked", "Ended: phone state unknown for too long"
