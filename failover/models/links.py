"""A link: a server's connection to its pair of peers of one kind."""

from __future__ import annotations

from django.db import models

from failover.choices import LinkState, PeerKind
from failover.models.peers import Peer


class Link(models.Model):
    """The pair (server, kind) as one connection, with its state and fencing epoch.

    The connected peer is the pair's peer whose ``connection`` is ``connected`` (the
    database allows at most one). ``epoch`` rises by one on every switchover; it is the
    fencing token that lets a late writer find out it is stale. Rows are locked with
    ``select_for_update`` by the switchover service before touching the pair's peers.
    """

    server = models.ForeignKey("failover.Server", on_delete=models.CASCADE, related_name="links")
    kind = models.CharField(max_length=32, choices=PeerKind.choices)
    state = models.CharField(max_length=16, choices=LinkState.choices, default=LinkState.DOWN)
    epoch = models.PositiveBigIntegerField(default=0)
    state_changed_at = models.DateTimeField(null=True, blank=True)
    last_switchover_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["server__name", "kind"]
        constraints = [
            models.UniqueConstraint(fields=["server", "kind"], name="failover_link_one_per_server_and_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.server.name} {self.get_kind_display()} link"

    def peers(self) -> models.QuerySet:
        return Peer.objects.filter(server_id=self.server_id, kind=self.kind)
