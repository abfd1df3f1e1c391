"""Prometheus metrics at ``/metrics``, computed from the database at scrape time (and the
Celery queue's backlog from Redis, :class:`TaskQueueCollector`).

Several processes serve the product (web nodes, the Celery worker, the health monitor in
whichever node holds the lease), so counters kept in one process's memory would disagree
from node to node. Instead every number here is read from the database when Prometheus
scrapes, by :class:`DatabaseCollector` in a private registry: any node gives the same
answer, and a restart loses nothing.

The cost of a scrape is a fixed number of aggregate queries (one per table, see
``collect``), whatever the number of servers, peers, sessions or failover events.
Failover counters and histograms aggregate over every stored event, so they only grow
(as Prometheus counters must) and ``rate()`` and ``histogram_quantile()`` work on them.

Access: anonymous scrapers from ``METRICS_ALLOWED_IPS``, a user holding view_desktop, or a bearer token
equal to ``METRICS_TOKEN``; everyone else gets 403 (see docs/metrics.md).
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.db.models.lookups import LessThanOrEqual
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from collabadmin.task_queue import queue_state, watched_queues
from common.permissions import may
from common.redis_client import shared_redis
from common.roles import VIEW_DESKTOP
from failover.choices import INSTANT_DETECTIONS, AlertKind, Detection, FailoverKind, Health, LinkState, PeerConnection
from failover.models import Alert, FailoverEvent, Lease, Link, Peer, Server
from sessions.choices import AgentState, SessionState
from sessions.models import Agent, CollaborationSession

log = logging.getLogger(__name__)

PREFIX = "collabadmin"
# Upper bounds (seconds) of the detection and switchover histograms; +Inf is added.
DURATION_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10)
# The lease the health monitor holds (failover.monitor.monitor.LEASE_NAME); repeated
# here so that serving metrics does not import the monitor's asyncio machinery.
MONITOR_LEASE_NAME = "health-monitor"


def _gauge(name: str, documentation: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, labels=list(labels))


def _seconds(value: timedelta | None) -> float:
    return value.total_seconds() if value is not None else 0.0


class DatabaseCollector(Collector):
    """Reads the current state of links, peers, servers, sessions, alerts and failover
    events in a fixed number of aggregate queries and yields them as metric families."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        servers = list(Server.objects.order_by("name").values_list("name", "role", "health", "degraded_since"))
        server_names = [name for name, *_ in servers]
        yield from self._servers(servers)
        peers = list(
            Peer.objects.order_by("server__name", "kind", "priority").values_list(
                "server__name",
                "name",
                "kind",
                "health",
                "connection",
                "in_maintenance",
                "last_latency_ms",
                "consecutive_failures",
            )
        )
        yield from self._links(peers)
        yield from self._peers(peers)
        yield from self._failover_counts(server_names)
        yield from self._failover_durations()
        yield from self._sessions(server_names, now)
        yield from self._agents(server_names)
        yield from self._alerts()
        yield from self._monitor(now)

    # --- Topology -------------------------------------------------------------------------
    @staticmethod
    def _servers(servers: list[tuple[str, str, str, datetime | None]]) -> Iterator[Metric]:
        up = _gauge(
            "server_up", "1 when the Collaboration Server answers its health probe, else 0.", ["server", "role"]
        )
        degraded = _gauge(
            "server_degraded",
            "1 while the Collaboration Server is up but slow (degraded): new callers go elsewhere first.",
            ["server", "role"],
        )
        for name, role, health, degraded_since in servers:
            up.add_metric([name, role], 1 if health == Health.UP else 0)
            degraded.add_metric([name, role], 1 if degraded_since is not None else 0)
        yield up
        yield degraded

    @staticmethod
    def _links(peers: list[tuple]) -> Iterator[Metric]:
        state = _gauge(
            "link_state",
            "1 for the link's current state, 0 for every other state (one series per state).",
            ["server", "kind", "state"],
        )
        epoch = _gauge(
            "link_epoch", "The link's fencing epoch; it rises by one on every switchover.", ["server", "kind"]
        )
        available = _gauge(
            "link_peers_available",
            "Peers of the link's pair that are up and not in maintenance: 2 redundant, 1 without redundancy, 0 down.",
            ["server", "kind"],
        )
        usable: dict[tuple[str, str], int] = {}
        for server, _, kind, health, _, in_maintenance, *_ in peers:
            usable[server, kind] = usable.get((server, kind), 0) + (health == Health.UP and not in_maintenance)
        rows = Link.objects.order_by("server__name", "kind").values_list("server__name", "kind", "state", "epoch")
        for server, kind, current, link_epoch in rows:
            for value in LinkState.values:
                state.add_metric([server, kind, value], 1 if value == current else 0)
            epoch.add_metric([server, kind], link_epoch)
            available.add_metric([server, kind], usable.get((server, kind), 0))
        yield from (state, epoch, available)

    @staticmethod
    def _peers(rows: list[tuple]) -> Iterator[Metric]:
        labels = ["server", "peer", "kind"]
        up = _gauge("peer_up", "1 when the peer is up by its rise/fall probes, 0 when down or unknown.", labels)
        connected = _gauge("peer_connected", "1 when the peer is its pair's connected peer, else 0.", labels)
        maintenance = _gauge("peer_in_maintenance", "1 when the peer is in maintenance, else 0.", labels)
        latency = _gauge(
            "peer_probe_latency_seconds",
            "Round-trip time of the peer's last answered probe (absent until one is answered).",
            labels,
        )
        failures = _gauge("peer_consecutive_failures", "Failed probes in a row at the last flush.", labels)
        for server, name, kind, health, connection, in_maintenance, latency_ms, failure_count in rows:
            key = [server, name, kind]
            up.add_metric(key, 1 if health == Health.UP else 0)
            connected.add_metric(key, 1 if connection == PeerConnection.CONNECTED else 0)
            maintenance.add_metric(key, 1 if in_maintenance else 0)
            if latency_ms is not None:
                latency.add_metric(key, latency_ms / 1000)
            failures.add_metric(key, failure_count)
        yield from (up, connected, maintenance, latency, failures)

    # --- Failovers ------------------------------------------------------------------------
    @staticmethod
    def _failover_counts(server_names: list[str]) -> Iterator[Metric]:
        """Events by server and kind, and failures by how they were noticed: one query."""
        rows = FailoverEvent.objects.order_by().values("server__name", "kind", "detection").annotate(n=Count("pk"))
        counts: dict[tuple[str, str], int] = {}
        detections: dict[str, int] = {}
        for row in rows:
            key = (row["server__name"], row["kind"])
            counts[key] = counts.get(key, 0) + row["n"]
            if row["detection"]:
                detections[row["detection"]] = detections.get(row["detection"], 0) + row["n"]
        total = CounterMetricFamily(
            f"{PREFIX}_failovers",
            "Failover events recorded (switchovers, link losses and restores, server failures), by kind.",
            labels=["server", "kind"],
        )
        # Every (server, kind) is listed, zeros included, so rate() works from the first event.
        for server in server_names:
            for kind in FailoverKind.values:
                total.add_metric([server, kind], counts.get((server, kind), 0))
        yield total
        noticed = CounterMetricFamily(
            f"{PREFIX}_failure_detections",
            'Failures by how the monitor noticed them; at_once="true": seen the moment they happened '
            "(a reset, closed or refused connection), with no detection time to observe.",
            labels=["detection", "at_once"],
        )
        for detection in Detection.values:
            noticed.add_metric([detection, str(detection in INSTANT_DETECTIONS).lower()], detections.get(detection, 0))
        yield noticed

    @staticmethod
    def _failover_durations() -> Iterator[Metric]:
        """Both histograms in one aggregate query: one filtered COUNT per bucket, a COUNT
        and a SUM per histogram. The database does the bucketing; no row leaves it."""
        durations = {
            # Failures noticed at once (a reset or refused connection) have no detection
            # time: observing them as 0 s would drag the histogram towards a figure nobody
            # measured. They are counted by how they were noticed (``failure_detections``).
            "detection": (
                ExpressionWrapper(F("detected_at") - F("failed_at"), output_field=DurationField()),
                Q(failed_at__isnull=False) & ~Q(detection__in=INSTANT_DETECTIONS, failed_at=F("detected_at")),
            ),
            "switchover": (
                ExpressionWrapper(F("completed_at") - F("detected_at"), output_field=DurationField()),
                Q(completed_at__isnull=False),
            ),
        }
        aggregates = {}
        for name, (duration, present) in durations.items():
            for index, bound in enumerate(DURATION_BUCKETS):
                # NULL (no failed_at / completed_at) compares as unknown: not counted.
                aggregates[f"{name}_le_{index}"] = Count(
                    "pk", filter=Q(LessThanOrEqual(duration, timedelta(seconds=bound))) & present
                )
            aggregates[f"{name}_count"] = Count("pk", filter=present)
            aggregates[f"{name}_sum"] = Sum(duration, filter=present)
        values = FailoverEvent.objects.order_by().aggregate(**aggregates)
        docs = {
            "detection": "Seconds from a failure's start (first failed probe or dropped connection) "
            "to the monitor declaring it.",
            "switchover": "Seconds from a failure's detection to the switchover's commit.",
        }
        for name in durations:
            buckets = [
                (floatToGoString(bound), values[f"{name}_le_{index}"]) for index, bound in enumerate(DURATION_BUCKETS)
            ]
            buckets.append(("+Inf", values[f"{name}_count"]))
            yield HistogramMetricFamily(
                f"{PREFIX}_failover_{name}_seconds",
                docs[name],
                buckets=buckets,
                sum_value=_seconds(values[f"{name}_sum"]),
            )

    # --- Sessions, agents, alerts ---------------------------------------------------------
    @staticmethod
    def _sessions(server_names: list[str], now) -> Iterator[Metric]:
        by_state = dict(
            CollaborationSession.objects.order_by().values("state").annotate(n=Count("pk")).values_list("state", "n")
        )
        sessions = _gauge("sessions", "Collaboration sessions by state (ended ones included).", ["state"])
        for state in SessionState.values:
            sessions.add_metric([state], by_state.get(state, 0))
        yield sessions

        queues = {
            row["server__name"]: row
            for row in CollaborationSession.objects.order_by()
            .filter(state=SessionState.QUEUED)
            .values("server__name")
            .annotate(n=Count("pk"), oldest=Min("queued_at"))
        }
        depth = _gauge("queue_depth", "Sessions waiting in the server's queue.", ["server"])
        oldest = _gauge(
            "queue_oldest_wait_seconds", "How long the oldest queued session has waited (0: empty queue).", ["server"]
        )
        for server in server_names:
            row = queues.get(server)
            depth.add_metric([server], row["n"] if row else 0)
            oldest.add_metric([server], max(0.0, (now - row["oldest"]).total_seconds()) if row else 0.0)
        yield depth
        yield oldest

    @staticmethod
    def _agents(server_names: list[str]) -> Iterator[Metric]:
        counts = {
            (row["server__name"], row["state"]): row["n"]
            for row in Agent.objects.order_by()
            .filter(enabled=True)
            .values("server__name", "state")
            .annotate(n=Count("pk"))
        }
        agents = _gauge("agents", "Enabled agents by state (logged out, not ready, ready).", ["server", "state"])
        for server in server_names:
            for state in AgentState.values:
                agents.add_metric([server, state], counts.get((server, state), 0))
        yield agents

    @staticmethod
    def _alerts() -> Iterator[Metric]:
        counts = dict(
            Alert.objects.order_by()
            .filter(cleared_at__isnull=True)
            .values("kind")
            .annotate(n=Count("pk"))
            .values_list("kind", "n")
        )
        alerts = _gauge("alerts_open", "Alerts raised and not yet cleared, by kind.", ["kind"])
        for kind in AlertKind.values:
            alerts.add_metric([kind], counts.get(kind, 0))
        yield alerts

    @staticmethod
    def _monitor(now) -> Iterator[Metric]:
        held = (
            Lease.objects.filter(name=MONITOR_LEASE_NAME, expires_at__gt=now)
            .exclude(holder="")
            .values_list("holder_late_ms", flat=True)
            .first()
        )
        active = _gauge(
            "health_monitor_active",
            "1 when some node holds an unexpired health-monitor lease (peers are being probed), else 0.",
        )
        active.add_metric([], 1 if held is not None else 0)
        late = _gauge(
            "health_monitor_late_seconds",
            "How late the acting health monitor's event loop ran at worst over the last 30 s "
            "(reported with its lease renewals; 0 when no monitor is active).",
        )
        late.add_metric([], (held or 0.0) / 1000)
        yield active
        yield late


class TaskQueueCollector(Collector):
    """The Celery queues' backlog (the worker's and the notifier's), read from Redis (the
    broker) at scrape time: the one figure here that is not in the database. Absent while
    Redis does not answer."""

    def collect(self) -> Iterator[Metric]:
        try:
            states = [queue_state(shared_redis(), queue) for queue in watched_queues()]
        except redis.RedisError:
            log.warning("metrics: Redis did not answer; task queue figures left out", exc_info=True)
            return
        waiting = _gauge("task_queue_waiting", "Celery task messages waiting in the queue.", ["queue"])
        oldest = _gauge(
            "task_queue_oldest_wait_seconds",
            "How long the next task message to be taken has waited (0: empty queue); grows while no worker takes work.",
            ["queue"],
        )
        for state in states:
            waiting.add_metric([state.queue], state.waiting)
            oldest.add_metric([state.queue], state.oldest_wait_seconds or 0.0)
        yield waiting
        yield oldest


registry = CollectorRegistry(auto_describe=False)
registry.register(DatabaseCollector())
registry.register(TaskQueueCollector())


# --- Access ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)
    except ValueError as exc:
        raise ImproperlyConfigured(f"METRICS_ALLOWED_IPS: {exc}") from None


def address_allowed(address: str) -> bool:
    """Whether ``address`` is in one of ``METRICS_ALLOWED_IPS`` (addresses or CIDR networks)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # "::ffff:127.0.0.1" from a dual-stack socket
    return any(ip in network for network in _networks(tuple(settings.METRICS_ALLOWED_IPS)))


def token_matches(request: HttpRequest) -> bool:
    expected = settings.METRICS_TOKEN
    if not expected:
        return False
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def may_scrape(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return token_matches(request) or may(user, VIEW_DESKTOP) or address_allowed(request.META.get("REMOTE_ADDR", ""))


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """The Prometheus text exposition of :class:`DatabaseCollector`; 403 for strangers,
    503 when the database does not answer (Prometheus then records ``up == 0``)."""
    if not may_scrape(request):
        return HttpResponse(
            "Forbidden: scrape from an address in METRICS_ALLOWED_IPS, as a user whose role may view the desktop, "
            "or with 'Authorization: Bearer <METRICS_TOKEN>'.\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    try:
        body = generate_latest(registry)
    except DatabaseError:
        log.exception("metrics: the database did not answer")
        return HttpResponse("Database unavailable.\n", status=503, content_type="text/plain; charset=utf-8")
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
