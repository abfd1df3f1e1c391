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
    degraded: bool = False


@dataclass(frozen=True)
class Timings:
    interval: float
    timeout: float
    rise: int
    fall: int
    flap_window: float
    flap_max: int
    # Seconds between the heartbeats asked of peers that offer them; 0: probes only.
    heartbeat_interval: float = 0.0
    # The phi level at which a silent peer is declared down (failover/monitor/phi.py).
    heartbeat_suspicion: float = 8.0


@dataclass(frozen=True)
class ServerTimings:
    """Servers' own thresholds (failover/monitor/server_evidence.py says how they are used)."""

    interval: float
    timeout: float
    rise: int
    flap_window: float
    flap_max: int
    silence: float
    unresponsive: float


def load_peers() -> list[PeerTarget]:
    return [
        PeerTarget(id=pk, name=name, kind=kind, host=host, port=port, health=Health(health))
        for pk, name, kind, host, port, health in Peer.objects.values_list(
            "pk", "name", "kind", "host", "port", "health"
        )
    ]


def load_servers() -> list[ServerTarget]:
    """Servers with a ``base_url`` (a node that answers /healthz); others are not probed."""
    rows = Server.objects.exclude(base_url="").values_list("pk", "name", "base_url", "health", "degraded_since")
    return [
        ServerTarget(id=pk, name=name, base_url=url, health=Health(health), degraded=since is not None)
        for pk, name, url, health, since in rows
    ]


def load_degraded() -> set[int]:
    """The ids of the servers the database holds degraded."""
    return set(Server.objects.filter(degraded_since__isnull=False).values_list("pk", flat=True))


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
        heartbeat_interval=policy.heartbeat_interval_ms / 1000,
        heartbeat_suspicion=policy.heartbeat_suspicion,
    )


def load_server_timings() -> ServerTimings:
    policy = Policy.current()
    return ServerTimings(
        interval=policy.server_probe_interval_ms / 1000,
        timeout=policy.server_probe_timeout_ms / 1000,
        rise=policy.rise,
        flap_window=float(policy.flap_window_seconds),
        flap_max=policy.flap_max_transitions,
        silence=float(policy.server_silence_seconds),
        unresponsive=float(policy.server_unresponsive_seconds),
    )
