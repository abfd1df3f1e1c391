"""The ICM conversation: which Admin Workstation a server is connected to, and what we ask it.

The one place that talks to a server's connected Admin Workstation (AW); the wizards and
Verify and Sync go through here. Only ``failover.peering.client`` reaches the peer
(docs/peer-protocol.md section 8), so a real ICM integration replaces that adapter, not
this module. Everything here is network I/O or a plain read of the link: callers must not
hold a database transaction open around it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from failover.choices import LinkState, PeerConnection, PeerKind
from failover.models import Link, Peer
from failover.peering import client

ADMIN_WORKSTATION_KIND: Final = "admin-workstation"
# Changes are written to disk (fsync) before the AW answers: a little more than a read.
DEFAULT_TIMEOUT: Final = 3.0


class NoAdminWorkstation(client.PeerUnavailable):
    """The server's Admin Workstation link is down: nobody to ask."""

    def __init__(self, server_id: int) -> None:
        super().__init__(client.UNREACHABLE, f"no Admin Workstation is connected for server {server_id}")


@dataclass(frozen=True)
class AdminWorkstationPeer:
    """Where the connected AW listens and the link epoch it was connected under."""

    peer_id: int
    name: str
    host: str
    port: int
    epoch: int


@dataclass(frozen=True)
class IcmConfig:
    """The ICM configuration as Verify and Sync compares it."""

    version: int
    agents: dict[str, dict[str, Any]]  # agent_id -> {"name", "enabled", "skill_groups": [...]}
    skill_groups: dict[str, str]  # skill_group_id -> name


def connected_admin_workstation(server_id: int) -> AdminWorkstationPeer | None:
    """The AW connected for ``server_id`` now, or ``None`` while the link is down."""
    peer = Peer.objects.filter(
        server_id=server_id, kind=PeerKind.ADMIN_WORKSTATION, connection=PeerConnection.CONNECTED
    ).first()
    if peer is None or peer.connected_epoch is None:
        return None
    return AdminWorkstationPeer(peer.pk, peer.name, peer.host, peer.port, peer.connected_epoch)


def link_switching(server_id: int) -> bool:
    """A switch-over of the server's Admin Workstation link is under way: Verify and Sync wait
    (a plan checked against one AW and applied through the other is not worth the risk)."""
    return Link.objects.filter(server_id=server_id, kind=PeerKind.ADMIN_WORKSTATION, state=LinkState.SWITCHING).exists()


def link_epoch(server_id: int) -> int | None:
    """The AW link's epoch now (``None``: the server has no AW link)."""
    return (
        Link.objects.filter(server_id=server_id, kind=PeerKind.ADMIN_WORKSTATION)
        .values_list("epoch", flat=True)
        .first()
    )


def require_admin_workstation(server_id: int) -> AdminWorkstationPeer:
    """The connected AW, or ``NoAdminWorkstation``."""
    peer = connected_admin_workstation(server_id)
    if peer is None:
        raise NoAdminWorkstation(server_id)
    return peer


class AdminWorkstationClient(client.SyncPeerConnection):
    """One held connection to an AW for a series of requests from synchronous code (see
    ``client.SyncPeerConnection``). ``client.PeerUnavailable``: no answer, the change may or
    may not have been made; ``client.PeerError``: the AW said no (``.code`` as in the protocol).
    """

    expect_kind = ADMIN_WORKSTATION_KIND

    def __init__(self, peer: AdminWorkstationPeer, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(peer, timeout=timeout)

    def get_config(self) -> IcmConfig:
        reply = self.call("get_config")
        return IcmConfig(
            version=int(reply["config_version"]),
            agents={
                a["agent_id"]: {
                    "name": a["name"],
                    "enabled": bool(a["enabled"]),
                    "skill_groups": sorted(a["skill_groups"]),
                }
                for a in reply["agents"]
            },
            skill_groups={g["skill_group_id"]: g["name"] for g in reply["skill_groups"]},
        )

    def config_version(self) -> int:
        return int(self.call("list_skill_groups")["config_version"])

    def change(self, op: str, *, expected_version: int | None = None, **args: Any) -> int:
        """One configuration change; returns the new ``config_version``."""
        if expected_version is not None:
            args["expected_version"] = expected_version
        return int(self.call(op, **args)["config_version"])


def read_icm_config(server_id: int, *, timeout: float = DEFAULT_TIMEOUT) -> tuple[IcmConfig, AdminWorkstationPeer]:
    """The whole ICM configuration through the server's connected AW, with that AW."""
    peer = require_admin_workstation(server_id)
    with AdminWorkstationClient(peer, timeout=timeout) as aw:
        return aw.get_config(), peer
