"""PostgreSQL restarted while the product runs.

A PostgreSQL cluster of this test's own (tests/postgres_cluster.py: the machine's is
shared and never restarted), two real web nodes running the health monitor on it, a
Media Blender pair of real simulators. The cluster is stopped, left away for a while, and
started again, as ``pg_ctlcluster ... restart`` with a slow start would; then it is
restarted quickly (``pg_ctl restart``). While it is away the connected Media Blender is
killed, and so is the node that does not run the acting monitor: two decisions the
monitor cannot write until the database is back. Expected:

* while it is away, the nodes answer 503 on ``/readyz`` (and 200 on ``/healthz``: they
  are fine themselves), and an API request 503 with ``Retry-After`` (try again), not 500,
  and so do the pages (the caller's form, a logged-in overview) with a readable page;
* they answer 200 on ``/readyz`` again within 10 s of its return, by themselves;
* the monitor keeps or retakes its lease: exactly one monitor acts afterwards, the one the
  lease names;
* no decision is lost: the pair switches over to the surviving Media Blender, once, and
  the killed node's server is failed, once;
* nothing false is decided: the other server stays up with its session and log-in.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest

from failover.monitor.monitor import LEASE_NAME
from tests.peering.conftest import start_peer  # noqa: F401  (fixture)
from tests.postgres_cluster import Cluster, throwaway_cluster
from tests.processes import free_port, http_status, run_python, start_node, stop_process, wait_for_node
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

AWAY_SECONDS = 5.0
RECOVERY_BOUND_S = 10.0

SEED = """
from failover.choices import Health, PeerKind, PeerPriority
from failover.models import Policy
from sessions.choices import AgentState, SessionState
from tests.factories import AgentFactory, PeerFactory, ServerFactory, SessionFactory
ports = {ports}
Policy.objects.update_or_create(id=1, defaults=dict(probe_interval_ms=200, probe_timeout_ms=1000, rise=2, fall=3))
for name in ("routing-a", "routing-b"):
    server = ServerFactory(name=name, base_url=f"http://127.0.0.1:{{ports[name]}}")
    agent = AgentFactory(server=server, state=AgentState.READY, max_sessions=1)
    SessionFactory(server=server, state=SessionState.ACTIVE, agent=agent, caller_name=f"{{name}}-caller")
    if name == "routing-a":
        for priority, peer in enumerate(["mb-1", "mb-2"], start=PeerPriority.PRIMARY):
            PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=priority, name=peer, port=ports[peer])
"""


def query(cluster: Cluster, sql: str, *params) -> list[tuple]:
    with psycopg.connect(cluster.url.replace("postgres://", "postgresql://"), connect_timeout=3) as conn:
        return conn.execute(sql, params).fetchall()


def readyz(port: int) -> int | None:
    return http_status(f"http://127.0.0.1:{port}/readyz", timeout=3)


def api_answer(port: int) -> tuple[int | None, str | None]:
    """The status and Retry-After of an API request: its token is looked up in the database."""
    request = urllib.request.Request(  # noqa: S310 (http to our own node)
        f"http://127.0.0.1:{port}/api/v1/status/", headers={"Authorization": "Token any-token"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, response.headers.get("Retry-After")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Retry-After")


def page_answer(port: int, path: str, cookie: str = "") -> tuple[int | None, str | None, str]:
    """The status, Retry-After and text of an HTML page (a session cookie is looked up in the database)."""
    request = urllib.request.Request(  # noqa: S310 (http to our own node)
        f"http://127.0.0.1:{port}{path}", headers={"Cookie": cookie} if cookie else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, response.headers.get("Retry-After"), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Retry-After"), error.read().decode()


def connected_peer(cluster: Cluster) -> str | None:
    rows = query(cluster, "SELECT name FROM failover_peer WHERE connection = 'connected'")
    return rows[0][0] if rows else None


ACTIVE = ("health monitor active", "health monitor took its expired lease again")
LOST = "health monitor lost its lease"


def last_lease_word(log: Path) -> str | None:
    """What the node's monitor last said about its lease (its JSON log), if anything."""
    last = None
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            message = json.loads(line).get("message", "")
            if message in (*ACTIVE, LOST):
                last = message
    return last


@pytest.fixture
def installation(tmp_path, start_peer, settings):  # noqa: F811
    with throwaway_cluster() as cluster:
        mbs = {name: start_peer("media-blender", "--name", name) for name in ("mb-1", "mb-2")}
        ports = {"routing-a": free_port(), "routing-b": free_port()} | {n: p.port for n, p in mbs.items()}
        env = {"DATABASE_URL": cluster.url, "REDIS_URL": settings.REDIS_URL}
        migrate = run_python(
            "from django.core.management import call_command; call_command('migrate', verbosity=0)", timeout=180, **env
        )
        assert migrate.returncode == 0, migrate.stderr
        seeded = run_python(SEED.format(ports=ports), **env)
        assert seeded.returncode == 0, seeded.stderr
        nodes = {}
        try:
            for name in ("routing-a", "routing-b"):
                log = tmp_path / f"{name}.log"
                nodes[name] = (start_node(name, ports[name], log, DATABASE_URL=cluster.url), ports[name], log)
                wait_for_node(f"http://127.0.0.1:{ports[name]}", nodes[name][0], log)
            yield cluster, mbs, nodes
        finally:
            for process, _, _ in nodes.values():
                stop_process(process)


def test_a_database_restart_loses_no_decision_and_the_nodes_recover_by_themselves(installation):
    cluster, mbs, nodes = installation

    def logs() -> str:
        tails = [f"--- {name}\n{log.read_text(errors='replace')[-2500:]}" for name, (_, _, log) in nodes.items()]
        return "\n".join(tails) + "\n--- postgres\n" + cluster.log_tail()

    wait_until(
        lambda: (
            query(cluster, "SELECT count(*) FROM failover_server WHERE health = 'up'")[0][0] == 2
            and connected_peer(cluster) is not None
            and all(readyz(port) == 200 for _, port, _ in nodes.values())
        ),
        timeout=40,
        message="both servers up, a Media Blender connected, both nodes ready",
        diagnostics=logs,
    )
    first = connected_peer(cluster)
    survivor = ({"mb-1", "mb-2"} - {first}).pop()
    [(holder_before, epoch_before)] = query(
        cluster, "SELECT holder, epoch FROM failover_lease WHERE name = %s", LEASE_NAME
    )
    acting_node = holder_before.split(":")[0]
    killed = ({"routing-a", "routing-b"} - {acting_node}).pop()

    cluster.stop()
    away_since = time.monotonic()
    mbs[first].kill()  # both decided while the database is away
    nodes[killed][0].kill()
    wait_until(
        lambda: readyz(nodes[acting_node][1]) == 503,
        timeout=10,
        message="the node not ready while the database is away",
        diagnostics=logs,
    )
    assert http_status(f"http://127.0.0.1:{nodes[acting_node][1]}/healthz") == 200
    assert api_answer(nodes[acting_node][1]) == (503, "2"), logs()
    # The pages too: the caller's form (it asks the director) and a logged-in administrator's
    # overview (the session is looked up) say "temporarily unavailable", not "server error".
    for path, cookie in (("/request/", ""), ("/", "sessionid=an-administrators-session")):
        status, retry_after, text = page_answer(nodes[acting_node][1], path, cookie)
        assert (status, retry_after) == (503, "2"), (path, status, text[:2000], logs())
        assert "Temporarily unavailable" in text
    time.sleep(max(0.0, AWAY_SECONDS - (time.monotonic() - away_since)))  # the outage lasts this long
    cluster.start()
    back_at = time.monotonic()

    wait_until(
        lambda: readyz(nodes[acting_node][1]) == 200,
        timeout=RECOVERY_BOUND_S,
        message=f"the node ready again within {RECOVERY_BOUND_S} s of the database's return",
        diagnostics=logs,
    )
    ready_after = time.monotonic() - back_at
    wait_until(
        lambda: connected_peer(cluster) == survivor and server_failures(cluster) == [killed],
        timeout=RECOVERY_BOUND_S,
        message="the pair switched over and the killed node's server failed",
        diagnostics=logs,
    )
    written_after = time.monotonic() - back_at
    [(holder, epoch)] = query(cluster, "SELECT holder, epoch FROM failover_lease WHERE name = %s", LEASE_NAME)
    print(
        f"database away {AWAY_SECONDS:.0f} s: node ready {ready_after:.2f} s after its return, decisions written "
        f"{written_after:.2f} s after; lease {holder_before}@{epoch_before} -> {holder}@{epoch}"
    )
    assert_one_monitor_acts(cluster, nodes, logs)

    # A quick restart too (pg_ctl restart): the node is ready again and nothing is decided.
    cluster.restart()
    back_at = time.monotonic()
    wait_until(
        lambda: readyz(nodes[acting_node][1]) == 200,
        timeout=RECOVERY_BOUND_S,
        message=f"the node ready again within {RECOVERY_BOUND_S} s of a quick restart",
        diagnostics=logs,
    )
    print(f"quick restart: node ready {time.monotonic() - back_at:.2f} s after")
    wait_until(
        lambda: query(cluster, "SELECT expires_at > now() FROM failover_lease WHERE name = %s", LEASE_NAME)[0][0],
        timeout=RECOVERY_BOUND_S,
        message="a monitor holds a fresh lease after the quick restart",
        diagnostics=logs,
    )
    assert_one_monitor_acts(cluster, nodes, logs)

    assert len(query(cluster, "SELECT id FROM failover_failoverevent WHERE kind = 'automatic'")) == 1
    assert server_failures(cluster) == [killed]
    health = dict(query(cluster, "SELECT name, health FROM failover_server"))
    assert health == {acting_node: "up", killed: "down"}
    sessions = dict(query(cluster, "SELECT caller_name, state FROM collab_sessions_collaborationsession"))
    assert sessions == {f"{acting_node}-caller": "active", f"{killed}-caller": "ended"}
    agents = dict(
        query(
            cluster, "SELECT s.name, a.state FROM collab_sessions_agent a JOIN failover_server s ON s.id = a.server_id"
        )
    )
    assert agents == {acting_node: "ready", killed: "logged_out"}


def server_failures(cluster: Cluster) -> list[str]:
    return [
        name
        for (name,) in query(
            cluster,
            "SELECT s.name FROM failover_failoverevent e JOIN failover_server s ON s.id = e.server_id "
            "WHERE e.kind = 'server_failed' ORDER BY e.id",
        )
    ]


def assert_one_monitor_acts(cluster: Cluster, nodes: dict, logs) -> None:
    """Exactly one monitor acts, the one the lease names; any other one said it lost it."""
    [(holder,)] = query(cluster, "SELECT holder FROM failover_lease WHERE name = %s", LEASE_NAME)
    alive = {name: log for name, (process, _, log) in nodes.items() if process.poll() is None}
    acting = {name for name, log in alive.items() if last_lease_word(log) in ACTIVE}
    assert acting == {holder.split(":")[0]}, logs()
