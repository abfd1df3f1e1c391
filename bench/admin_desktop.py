"""How fast the Administration desktop answers with 1,000 servers and 10,000 sessions.

In a throwaway database (on the PostgreSQL server ``BENCH_DATABASE_URL`` names, else an
SQLite file under /tmp/bench-var/admin-desktop; removed afterwards, see bench/_database.py),
the benchmark builds a small installation (10 servers, 100 sessions), measures, grows it
to the full size (``--servers``, ``--sessions``: each server with its two links and four
peers, one agent, a day of failover events and audit entries, an hour of session
samples, one server in 20 with a problem and an open alert) and measures again. For each
of ``/`` (the overview), ``/?fragment=1`` (its live refresh), ``/console/timeline/`` and
the status snapshot (``console.selectors.status_snapshot()`` and ``GET /api/v1/status/``)
it reports the server time of ``--requests`` requests through Django's WSGI handler, the
one a node serves HTTP with (the whole Django stack: middleware, view, queries, template;
no network, no ASGI server), as median and p95, the size of the answer and its number of
SQL queries. The query count must be the same at both sizes (issue 7 point 8: ≤ 300 ms,
constant queries).

:func:`build_installation` is also the dataset of ``tests/console/test_overview_scale.py``,
so the test and the benchmark speak of the same thing.

Run: ``.venv/bin/python -m bench.admin_desktop`` (``--help`` for the knobs). Prints a table
and writes ``bench/results/admin_desktop.json``.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from bench._common import (
    BENCH_VAR_DIR,
    DEFAULT_REDIS_URL,
    format_table,
    install_sigterm_handler,
    machine_info,
    percentile,
    write_results,
)
from bench._database import throwaway_database

DB_DIR = BENCH_VAR_DIR / "admin-desktop"
SMALL = (10, 100)


def build_installation(
    servers: int, sessions: int, *, prefix: str = "srv", start: int = 0, now: datetime | None = None
) -> None:
    """Add ``servers`` servers and ``sessions`` sessions (spread over them) with bulk inserts.

    Each server: its Media Blender and Admin Workstation links (connected, epoch 1), four
    peers (the primaries connected), one agent, two failover events and five audit
    entries in the last day. One server in 20 has a problem: a peer down, its Media
    Blender link down and an open alert. Sessions: 20 % queued, 10 % active, the rest
    ended. Plus an hour of session samples (one every 10 s) if there are none yet.
    Numbering starts at ``start`` so that a second call grows the same installation.
    """
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from failover.choices import (
        AlertKind,
        AuditAction,
        FailoverKind,
        Health,
        LinkState,
        PeerConnection,
        PeerKind,
        PeerPriority,
    )
    from failover.models import Alert, AuditEntry, FailoverEvent, Link, Peer, Server
    from sessions.choices import AgentState, EndReason, SessionState
    from sessions.models import Agent, CollaborationSession, SessionSample

    now = now or timezone.now()
    names = [f"{prefix}-{n:05d}" for n in range(start, start + servers)]
    Server.objects.bulk_create(
        Server(name=name, health=Health.UP, last_probe_at=now, health_changed_at=now) for name in names
    )
    rows = list(Server.objects.filter(name__in=names).order_by("name"))
    troubled = {server.pk for index, server in enumerate(rows, start=start) if index % 20 == 7}

    links, peers, alerts, events, audit = [], [], [], [], []
    for server in rows:
        bad = server.pk in troubled
        for kind, short, port in ((PeerKind.MEDIA_BLENDER, "mb", 21000), (PeerKind.ADMIN_WORKSTATION, "aw", 22000)):
            down = bad and kind == PeerKind.MEDIA_BLENDER
            state = LinkState.DOWN if down else LinkState.CONNECTED
            links.append(Link(server=server, kind=kind, state=state, epoch=1, state_changed_at=now))
            for priority in (PeerPriority.PRIMARY, PeerPriority.SECONDARY):
                connected = priority == PeerPriority.PRIMARY and not down
                peers.append(
                    Peer(
                        server=server,
                        kind=kind,
                        priority=priority,
                        name=f"{server.name}-{short}-{priority}",
                        port=port + priority,
                        health=Health.DOWN if down else Health.UP,
                        last_latency_ms=1.2,
                        connection=PeerConnection.CONNECTED if connected else PeerConnection.STANDBY,
                        connected_epoch=1 if connected else None,
                        connected_at=now if connected else None,
                        icm_side="A" if kind == PeerKind.MEDIA_BLENDER and connected else "",
                    )
                )
        if bad:
            alerts.append(
                Alert(server=server, kind=AlertKind.LINK_DOWN, message="Media Blender link down", raised_at=now)
            )
        for hours_ago, kind in ((3, FailoverKind.AUTOMATIC), (20, FailoverKind.MANUAL)):
            detected = now - timedelta(hours=hours_ago, minutes=server.pk % 60)
            events.append(
                FailoverEvent(
                    server=server,
                    kind=kind,
                    epoch=1,
                    reason="bench",
                    failed_at=detected - timedelta(milliseconds=300),
                    detected_at=detected,
                    completed_at=detected + timedelta(milliseconds=40),
                )
            )
        for n in range(5):
            audit.append(
                AuditEntry(
                    actor_name="system:poller",
                    action=AuditAction.LINK_SWITCHOVER,
                    object_type="failover.server",
                    object_id=str(server.pk),
                    object_repr=server.name,
                    reason=f"bench {n}",
                    before={"epoch": n},
                    after={"epoch": n + 1},
                )
            )
    Link.objects.bulk_create(links, batch_size=2000)
    Peer.objects.bulk_create(peers, batch_size=2000)
    Alert.objects.bulk_create(alerts, batch_size=2000)
    FailoverEvent.objects.bulk_create(events, batch_size=2000)
    AuditEntry.objects.bulk_create(audit, batch_size=2000)

    get_user_model().objects.bulk_create(get_user_model()(username=f"{name}-agent") for name in names)
    users = list(get_user_model().objects.filter(username__in=[f"{name}-agent" for name in names]).order_by("username"))
    Agent.objects.bulk_create(
        Agent(user=user, server=server, icm_id=f"A-{server.name}", state=AgentState.READY, logged_in_at=now)
        for user, server in zip(users, rows, strict=True)
    )
    agents = dict(Agent.objects.filter(server__in=rows).values_list("server_id", "pk"))

    batch = []
    for n in range(sessions):
        server = rows[n % len(rows)]
        queued_at = now - timedelta(seconds=n % 3600)
        share = n % 10
        if share < 2:
            state = {"state": SessionState.QUEUED}
        elif share < 3:
            state = {"state": SessionState.ACTIVE, "agent_id": agents[server.pk], "routed_at": now, "activated_at": now}
        else:
            state = {"state": SessionState.ENDED, "end_reason": EndReason.AGENT_ENDED, "ended_at": now}
        batch.append(
            CollaborationSession(
                server=server, caller_name=f"Caller {start}-{n}", queued_at=queued_at, any_skill_group=True, **state
            )
        )
    CollaborationSession.objects.bulk_create(batch, batch_size=2000)

    if not SessionSample.objects.exists():
        SessionSample.objects.bulk_create(
            SessionSample(at=now - timedelta(seconds=10 * i), queued=i % 40, in_transit=i % 3, active=100 + i % 25)
            for i in range(360)
        )


def _measure(call: Callable[[], Any], requests: int, prepare: Callable[[], Any] = lambda: None) -> dict[str, Any]:
    """Median and p95 server time (ms) of ``requests`` calls after 3 warm-ups, and the
    query count and size of one call; ``prepare()`` runs before each call, untimed."""
    from django.db import connection

    for _ in range(3):
        prepare()
        call()
    # Counted by an execute wrapper: unlike connection.queries, it survives the connection
    # being closed at the end of a request.
    captured: list[str] = []

    def count(execute: Callable[..., Any], sql: str, *rest: Any) -> Any:
        captured.append(sql)
        return execute(sql, *rest)

    prepare()
    with connection.execute_wrapper(count):
        result = call()
    times = []
    for _ in range(requests):
        prepare()
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return {
        "queries": len(captured),
        "bytes": len(result) if isinstance(result, bytes | str) else None,
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(percentile(times, 95), 1),
        "max_ms": round(max(times), 1),
    }


class NodeRequests:
    """GET requests through Django's WSGI handler, the handler a node serves HTTP with
    (``collabadmin/asgi.py``), as a logged-in administrator: no network, no ASGI server.

    Not ``django.test.Client``: with the test environment it keeps every rendered
    template's context, and a few thousand model instances a page piled up in this process
    until the collector's full passes made the tail of the figures (p95 2-3x the median).
    """

    def __init__(self, user: Any) -> None:
        from django.conf import settings
        from django.core.handlers.wsgi import WSGIHandler
        from django.test import Client

        login = Client()  # only to open a session as the user, as the login page would
        login.force_login(user)
        self.cookie = f"{settings.SESSION_COOKIE_NAME}={login.cookies[settings.SESSION_COOKIE_NAME].value}"
        self.handler = WSGIHandler()

    def get(self, url: str) -> Callable[[], bytes]:
        path, _, query = url.partition("?")

        def call() -> bytes:
            environ = {
                "REQUEST_METHOD": "GET",
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "SERVER_NAME": "localhost",
                "SERVER_PORT": "80",
                "HTTP_HOST": "localhost",
                "HTTP_COOKIE": self.cookie,
                "wsgi.input": io.BytesIO(),
                "wsgi.url_scheme": "http",
                "wsgi.errors": sys.stderr,
            }
            status: list[str] = []
            body = b"".join(self.handler(environ, lambda line, headers, *_: status.append(line)))
            if not status[0].startswith("200"):
                raise RuntimeError(f"GET {url}: {status[0]}")
            return body

        return call


def measure_all(requests: int) -> dict[str, dict[str, Any]]:
    from django.contrib.auth import get_user_model

    from console.selectors import status_snapshot
    from failover.models import Server

    admin, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    get = NodeRequests(admin).get
    # As a node does once it has loaded (collabadmin/asgi.py): what lives as long as the
    # process moves out of the collector's generations (here also what building the
    # installation left behind, which a node never holds).
    gc.collect()
    gc.freeze()

    targets: dict[str, Callable[[], Any]] = {
        "/": get("/"),
        "/?fragment=1": get("/?fragment=1"),
        "/?show=problems": get("/?show=problems"),
        "/console/timeline/": get("/console/timeline/"),
        "/console/timeline/?fragment=1": get("/console/timeline/?fragment=1"),
        "/console/timeline/?server=…&action=…": get(
            f"/console/timeline/?server={Server.objects.order_by('name').first().pk}&action=link.switchover"
        ),
        "status_snapshot()": status_snapshot,
        "/api/v1/status/": get("/api/v1/status/"),
    }
    figures = {name: _measure(call, requests) for name, call in targets.items()}
    # A live refresh after a change: every server card rendered (what each refresh cost
    # before console/server_cards.py), and with one card changed (a failover).
    partial = get("/partials/overview/")
    figures["/partials/overview/, all cards new"] = _measure(partial, requests, _forget_renders)
    figures["/partials/overview/, one card new"] = _measure(partial, requests, _one_card_changed())
    # The sessions page's live fragment, rendered afresh each time (what its 50 watchers
    # wait for after each session change: bench.desktop_load).
    sessions = get("/console/sessions/?fragment=1")
    figures["/console/sessions/?fragment=1, all rows new"] = _measure(sessions, requests, _forget_renders)
    figures["/console/sessions/?fragment=1, one row new"] = _measure(sessions, requests, _one_row_changed())
    return figures


def _forget_renders() -> None:
    from django.core.cache import caches

    from console.live_fragments import shared_renders

    shared_renders.clear()
    caches["server_cards"].clear()
    caches["session_rows"].clear()


def _one_card_changed() -> Callable[[], None]:
    """A change to the first card of the overview's first page (a peer's latency), and no
    shared render to answer from."""
    from console.live_fragments import shared_renders
    from console.views.overview import TopologyFilter, topology_rows
    from failover.models import Peer

    peer = Peer.objects.filter(server=topology_rows(TopologyFilter()).first()).first()
    latencies = iter(range(1, 10**9))

    def change() -> None:
        Peer.objects.filter(pk=peer.pk).update(last_latency_ms=next(latencies))
        shared_renders.clear()

    return change


def _one_row_changed() -> Callable[[], None]:
    """A change to the first row of the sessions page's first page (its phone note), and no
    shared render to answer from (a waiting caller's row is new each second anyway)."""
    from console.live_fragments import shared_renders
    from sessions.models import CollaborationSession

    session = CollaborationSession.objects.order_by("-queued_at", "-id").first()
    notes = iter(range(1, 10**9))

    def change() -> None:
        CollaborationSession.objects.filter(pk=session.pk).update(phone_note=f"note {next(notes)}")
        shared_renders.clear()

    return change


def table(results: dict[str, Any]) -> str:
    small, large = results["small"], results["large"]
    headers = [
        "page",
        f"queries @{results['sizes']['small']['servers']}",
        f"queries @{results['sizes']['large']['servers']}",
        "database",
        "p50 ms",
        "p95 ms",
        "max ms",
        "KiB",
    ]
    rows = []
    for name, figures in large.items():
        size = figures["bytes"]
        rows.append(
            [
                name,
                small[name]["queries"],
                figures["queries"],
                results.get("database", "SQLite"),  # results written before it was recorded: SQLite
                figures["p50_ms"],
                figures["p95_ms"],
                figures["max_ms"],
                round(size / 1024, 1) if size else "-",
            ]
        )
    return format_table(headers, rows)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=1000, help="servers of the full size (default 1000)")
    parser.add_argument("--sessions", type=int, default=10000, help="sessions of the full size (default 10000)")
    parser.add_argument("--requests", type=int, default=30, help="timed requests per page (default 30)")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway database")
    parser.add_argument("--output", default="admin_desktop", help="results file name under bench/results/")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    install_sigterm_handler()
    DB_DIR.mkdir(parents=True, exist_ok=True)
    database = throwaway_database(DB_DIR / f"{uuid.uuid4().hex}.sqlite3")
    # Before Django starts: a throwaway database, and a Redis URL so that nothing starts the
    # embedded Redis (nothing is published: these pages only read).
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "collabadmin.settings",
            "DEBUG": "1",
            "DATABASE_URL": database.url,
            "COLLABADMIN_VAR_DIR": str(BENCH_VAR_DIR / "django"),
            "REDIS_URL": os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
            "LOG_LEVEL": "WARNING",
        }
    )
    (BENCH_VAR_DIR / "django").mkdir(parents=True, exist_ok=True)
    import django

    django.setup()
    from django.core.management import call_command

    started = time.monotonic()
    try:
        call_command("migrate", verbosity=0)
        small_servers, small_sessions = SMALL
        build_installation(small_servers, small_sessions)
        small = measure_all(args.requests)
        print(f"--- small installation measured ({small_servers} servers)", file=sys.stderr, flush=True)
        built = time.monotonic()
        build_installation(args.servers - small_servers, args.sessions - small_sessions, start=small_servers)
        build_s = round(time.monotonic() - built, 1)
        print(f"--- grown to {args.servers} servers, {args.sessions} sessions in {build_s} s", file=sys.stderr)
        large = measure_all(args.requests)
    finally:
        from django.db import connections

        connections.close_all()
        if args.keep:
            print(f"--- kept the database: {database.url}", file=sys.stderr)
        else:
            database.drop()
    results = {
        "benchmark": "admin_desktop",
        "machine": machine_info(),
        "database": database.kind,
        "parameters": {k: v for k, v in vars(args).items() if k != "output"},
        "sizes": {
            "small": {"servers": SMALL[0], "sessions": SMALL[1]},
            "large": {"servers": args.servers, "sessions": args.sessions},
        },
        "duration_s": round(time.monotonic() - started, 1),
        "small": small,
        "large": large,
    }
    print(table(results))
    constant = all(small[name]["queries"] == large[name]["queries"] for name in large)
    print(
        f"\nquery counts {'constant' if constant else 'NOT constant'}; written: {write_results(args.output, results)}"
    )
    return 0 if constant else 1


if __name__ == "__main__":
    raise SystemExit(main())
