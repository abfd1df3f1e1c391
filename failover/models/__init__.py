"""Failover models, one concept per module."""

from failover.models.access import Access
from failover.models.alerts import Alert, ServerSilence
from failover.models.api_tokens import ApiToken
from failover.models.audit import AuditEntry
from failover.models.events import FailoverEvent
from failover.models.heartbeats import NodeHeartbeat
from failover.models.lease import Lease
from failover.models.links import Link
from failover.models.notifications import NotificationChannel, NotificationDelivery
from failover.models.peers import Peer
from failover.models.policy import Policy
from failover.models.servers import Server
from failover.models.sync import SyncRun
from failover.models.wizards import WizardRun

__all__ = [
    "Access",
    "Alert",
    "ApiToken",
    "AuditEntry",
    "FailoverEvent",
    "Lease",
    "Link",
    "NodeHeartbeat",
    "NotificationChannel",
    "NotificationDelivery",
    "Peer",
    "Policy",
    "Server",
    "ServerSilence",
    "SyncRun",
    "WizardRun",
]
