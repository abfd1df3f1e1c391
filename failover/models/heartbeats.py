"""Node heartbeats: each web node's own proof of life, written every second."""

from __future__ import annotations

from django.db import models

from failover.models.servers import Server


class NodeHeartbeat(models.Model):
    """The last beat of one node process (``host:pid``) of a server.

    The node writes it from its event loop every second with the database's clock
    (failover/monitor/node_heartbeat.py); the monitor reads its age with the same clock.
    A fresh beat says the node is alive however slowly it answers /healthz; a silent one,
    with /healthz unanswered too, says it is gone. The beat also carries the node's own
    view of how busy it is, which makes a slow node *degraded*.
    """

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="heartbeats")
    node = models.CharField(max_length=150, unique=True, help_text="host:pid of the node process.")
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField()
    loop_late_ms = models.FloatField(default=0, help_text="How late the node's event loop woke for this beat.")
    http_waiting = models.PositiveIntegerField(
        default=0, help_text="HTTP requests waiting for a thread of the node when it beat."
    )
    http_wait_ms = models.FloatField(
        default=0, help_text="The longest an HTTP request waited for a thread since the previous beat."
    )

    class Meta:
        indexes = [models.Index(fields=["server", "beat_at"], name="failover_heartbeat_server_beat")]

    def __str__(self) -> str:
        return f"{self.node} of {self.server_id}"
