"""What the monitor watches, as plain values read from the database in one query each."""

from __future__ import annotations

from dataclasses import dataclass

from failover.choices import Health
from failover.models import Peer, Policy, Server


@dataclass(frozen=True)
class PeerTarget:
    id: int
    name: str
    kind: str
    host: str
    port: int
    health: Health


@dataclass(frozen=True)
class ServerTarget:
    id: int
    name: str
    base_url: str
    health: Health


@dataclass(frozen=True)
class Timings:
    interval: float
    timeout: float
    rise: int
    fall: int
    flap_window: float
    flap_max: int


def load_peers() -> list[PeerTarget]:
    return [
        PeerTarget(id=pk, name=name, kind=kind, host=host, port=port, health=Health(health))
        for pk, name, kind, host, port, health in Peer.objects.values_list(
            "pk", "name", "kind", "host", "port", "health"
        )
    ]


def load_servers() -> list[ServerTarget]:
    """Servers with a ``base_url`` (a node that answers /healthz); others are not probed."""
    return [
        ServerTarget(id=pk, name=name, base_url=url, health=Health(health))
        for pk, name, url, health in Server.objects.exclude(base_url="").values_list("pk", "name", "base_url", "health")
    ]


def load_health() -> dict[tuple[str, int], Health]:
    """The health the database holds, keyed ("peer"|"server", id): two small queries."""
    peers = {("peer", pk): Health(h) for pk, h in Peer.objects.values_list("pk", "health")}
    servers = {("server", pk): Health(h) for pk, h in Server.objects.values_list("pk", "health")}
    return peers | servers


def load_timings() -> Timings:
    policy = Policy.current()
    return Timings(
        interval=policy.probe_interval_ms / 1000,
        timeout=policy.probe_timeout_ms / 1000,
        rise=policy.rise,
        fall=policy.fall,
        flap_window=float(policy.flap_window_seconds),
        flap_max=policy.flap_max_transitions,
    )
