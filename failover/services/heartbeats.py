"""Node heartbeats: each web node's proof of life, and the monitor's reading of them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models.functions import Now

from failover.models import NodeHeartbeat, Server

# A node's rows of old processes (every restart is a new host:pid) are removed after this.
FORGET_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class BeatFigures:
    """What a node says about itself with each beat."""

    loop_late_ms: float
    http_waiting: int
    http_wait_ms: float


def node_heartbeat_record(*, server_name: str, node: str, figures: BeatFigures) -> bool:
    """Write the beat of ``node`` (``host:pid``) of ``server_name``, stamped with the
    database's clock so that the monitor measures its age with the same clock whatever the
    hosts' clocks say. One UPDATE a second in the steady state.

    Not audited and not broadcast, like probe figures: it is a measurement, not a change of
    state. Returns False when no server of that name exists (nothing is written).
    """
    fields = {
        "beat_at": Now(),
        "loop_late_ms": figures.loop_late_ms,
        "http_waiting": figures.http_waiting,
        "http_wait_ms": figures.http_wait_ms,
    }
    if NodeHeartbeat.objects.filter(node=node).update(**fields):
        return True
    server_id = Server.objects.filter(name=server_name).values_list("pk", flat=True).first()
    if server_id is None:
        return False
    # This process's first beat: forget the rows of this server's long-gone processes.
    with transaction.atomic():
        NodeHeartbeat.objects.filter(server_id=server_id, beat_at__lt=Now() - FORGET_AFTER).delete()
        NodeHeartbeat.objects.create(server_id=server_id, node=node, started_at=Now(), **fields)
    return True


@dataclass(frozen=True)
class ServerBeat:
    """The freshest beat among a server's nodes, and the worst HTTP wait among its live ones."""

    age_seconds: float
    http_wait_ms: float


def node_heartbeats_read(*, live_within: float) -> dict[int, ServerBeat]:
    """Per server id: how old its freshest beat is (the database's clock, now), and the
    longest HTTP wait reported by its nodes that beat within ``live_within`` seconds.
    One query, whatever the number of nodes."""
    beats: dict[int, ServerBeat] = {}
    rows = NodeHeartbeat.objects.annotate(db_now=Now()).values_list("server_id", "beat_at", "db_now", "http_wait_ms")
    for server_id, beat_at, db_now, http_wait_ms in rows:
        age = max(0.0, (_aware(db_now) - _aware(beat_at)).total_seconds())
        wait = http_wait_ms if age <= live_within else 0.0
        known = beats.get(server_id)
        if known is None:
            beats[server_id] = ServerBeat(age, wait)
        else:
            beats[server_id] = ServerBeat(min(known.age_seconds, age), max(known.http_wait_ms, wait))
    return beats


def _aware(value: datetime) -> datetime:
    # Both sides are UTC; a backend that hands a value back without its zone means UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
