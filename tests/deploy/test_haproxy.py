"""The shipped balancer, deploy/haproxy.cfg, in front of two real nodes.

A real HAProxy (Debian's package) runs the file as shipped, its addresses from the
environment as the systemd unit gives them; behind it, two real nodes (uvicorn, the
project's ASGI application, each with its health monitor) for routing-a and routing-b.
Callers POST through the balancer as scripts do; one node is SIGKILLed under them. What
must hold: requests that never reached the dead node are retried on the other (only the
requests the node was serving when it died can fail), none fails once HAProxy has marked
the node down, every request answered 201 is a session in the database (none lost), and
the WebSocket of a desktop works through the balancer. The figures (failures in the
detection window, time until HAProxy marked the node down and until the survivor serves
every request) are printed.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from websockets.sync.client import connect as ws_connect

from failover.choices import Health
from failover.models import Policy, Server
from failover.services.drain import server_drain, server_undrain
from sessions.models import CollaborationSession
from tests.factories import ServerFactory, api_key
from tests.processes import ROOT, free_port, project_env, start_node, stop_process
from tests.waiting import wait_until
from tests.websockets import session_cookie

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

HAPROXY = "/usr/sbin/haproxy"
CONFIG = ROOT / "deploy" / "haproxy.cfg"
CALLERS = 4


def require_haproxy() -> None:
    if Path(HAPROXY).exists():
        return
    reason = f"{HAPROXY} is missing (apt-get install -y haproxy)"
    if os.environ.get("CI") == "true" or os.environ.get("COLLABADMIN_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def haproxy_stats(sock: Path) -> dict[str, dict[str, str]]:
    """``show stat`` of the routing_servers backend's servers, by server name."""
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(str(sock))
        conn.sendall(b"show stat\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    text = data.decode().lstrip("# ")
    rows = csv.DictReader(io.StringIO(text))
    return {row["svname"]: row for row in rows if row["pxname"] == "routing_servers"}


@dataclass
class Balanced:
    url: str
    stats_socket: Path
    nodes: dict[str, subprocess.Popen]
    logs: object

    def status(self, server: str) -> str:
        return haproxy_stats(self.stats_socket)[server]["status"]

    def requests_served(self, server: str) -> int:
        return int(haproxy_stats(self.stats_socket)[server]["stot"])


def start_haproxy(tmp_path: Path, ports: dict[str, int]) -> tuple[subprocess.Popen, int, Path]:
    """HAProxy running deploy/haproxy.cfg as shipped in front of routing-a's and
    routing-b's nodes: (the process, its front port, its stats socket); log in haproxy.log."""
    front = free_port()
    stats_socket = tmp_path / "haproxy.sock"
    env = project_env(
        COLLAB_BIND=f"127.0.0.1:{front}",
        COLLAB_HOST="localhost",
        ROUTING_A=f"127.0.0.1:{ports['routing-a']}",
        ROUTING_B=f"127.0.0.1:{ports['routing-b']}",
        HAPROXY_STATS_SOCKET=str(stats_socket),
    )
    check = subprocess.run([HAPROXY, "-c", "-f", str(CONFIG)], env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    with open(tmp_path / "haproxy.log", "ab") as log:
        haproxy = subprocess.Popen([HAPROXY, "-db", "-f", str(CONFIG)], env=env, stdout=log, stderr=subprocess.STDOUT)
    return haproxy, front, stats_socket


@pytest.fixture
def balanced(tmp_path) -> Iterator[Balanced]:
    require_haproxy()
    policy = Policy.current()
    # Generous for the server failure the node's death causes (a busy machine is not a dead node).
    policy.probe_interval_ms, policy.probe_timeout_ms, policy.fall = 200, 1000, 3
    policy.save()
    ports = {"routing-a": free_port(), "routing-b": free_port()}
    for name, port in ports.items():
        ServerFactory(name=name, base_url=f"http://127.0.0.1:{port}")
    nodes = {name: start_node(name, port, tmp_path / f"{name}.log") for name, port in ports.items()}
    haproxy, front, stats_socket = start_haproxy(tmp_path, ports)

    def logs() -> str:
        names = [*ports, "haproxy"]
        return "\n".join(f"--- {n}\n{(tmp_path / f'{n}.log').read_text(errors='replace')[-3000:]}" for n in names)

    balanced = Balanced(f"http://127.0.0.1:{front}", stats_socket, nodes, logs)
    try:
        wait_until(
            lambda: (
                Server.objects.filter(health=Health.UP).count() == 2
                and stats_socket.exists()
                and all(balanced.status(name) == "UP" for name in ports)
            ),
            timeout=40,
            message="both servers up and both nodes UP in HAProxy",
            diagnostics=logs,
        )
        yield balanced
    finally:
        haproxy.terminate()
        haproxy.wait(timeout=10)
        for node in nodes.values():
            stop_process(node)


def failed(answers: list[tuple[float, int | str, str | None]]) -> list[tuple[float, int | str, str | None]]:
    return [answer for answer in answers if answer[1] != 201]


@dataclass
class Callers:
    """Scripts asking for sessions through the balancer, as fast as they are answered."""

    url: str
    token: str
    answers: list[tuple[float, int | str, str | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    # Seconds between one caller's requests (the callers' pace; 0: as fast as answered).
    pause: float = 0.0

    def ask(self, n: int) -> tuple[int | str, str | None]:
        request = urllib.request.Request(  # noqa: S310 (http to our own balancer)
            f"{self.url}/api/v1/sessions/",
            data=json.dumps({"caller_name": f"Caller {n}", "topic": "balancer"}).encode(),
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status, json.loads(response.read())["id"]
        except urllib.error.HTTPError as error:
            return error.code, None
        except (OSError, http.client.HTTPException) as error:  # an answer cut short (IncompleteRead) too
            return type(error).__name__, None

    def run(self, worker: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            status, session_id = self.ask(worker * 100_000 + n)
            self.answers.append((time.monotonic(), status, session_id))
            self.stop.wait(self.pause)


def test_a_killed_node_behind_haproxy_costs_callers_at_most_its_in_flight_requests(balanced):
    staff = get_user_model().objects.create_user("script", password="x" * 16, is_superuser=True)  # noqa: S106
    callers = Callers(balanced.url, api_key(staff))

    # A desktop's WebSocket through the balancer: upgraded, and the snapshot arrives.
    front = balanced.url.replace("http://127.0.0.1", "localhost")
    with ws_connect(
        f"ws://{front}/ws/status/",
        additional_headers={"Cookie": session_cookie(staff), "Origin": f"http://{front}"},
        open_timeout=10,
    ) as desktop:
        first = json.loads(desktop.recv(timeout=10))
    assert first["type"] == "snapshot", first

    threads = [threading.Thread(target=callers.run, args=(i,), daemon=True) for i in range(CALLERS)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(callers.answers) >= 40, timeout=30, message="callers answered", diagnostics=balanced.logs)

    victim = "routing-a"
    killed_at = time.monotonic()
    balanced.nodes[victim].send_signal(signal.SIGKILL)
    wait_until(
        lambda: balanced.status(victim).startswith("DOWN"),
        timeout=10,
        message="HAProxy marked the killed node down",
        diagnostics=balanced.logs,
    )
    marked_down_at = time.monotonic()
    served_by_victim = balanced.requests_served(victim)
    answered_at_mark = len(callers.answers)
    wait_until(
        lambda: len(callers.answers) >= answered_at_mark + 100,
        timeout=60,
        message="callers answered after the node was marked down",
        diagnostics=balanced.logs,
    )
    callers.stop.set()
    for thread in threads:
        thread.join(timeout=15)

    before = [a for a in callers.answers if a[0] < killed_at]
    window = [a for a in callers.answers if killed_at <= a[0] < marked_down_at]
    after = [a for a in callers.answers if a[0] >= marked_down_at]
    print(
        f"HAProxy marked the killed node down {marked_down_at - killed_at:.3f} s after SIGKILL; "
        f"requests: {len(before)} before, {len(window)} in the window ({len(failed(window))} failed: "
        f"{sorted({str(a[1]) for a in failed(window)})}), {len(after)} after ({len(failed(after))} failed)"
    )
    assert failed(before) == [], balanced.logs()
    # Each caller had at most one request on the dead node when it died.
    assert len(failed(window)) <= CALLERS, failed(window)
    assert failed(after) == [], (failed(after), balanced.logs())
    # Once marked down, the dead node is never tried again: the survivor serves every request.
    assert balanced.requests_served(victim) == served_by_victim
    # Nothing lost: every session the callers were told about exists, once.
    told = [a[2] for a in callers.answers if a[1] == 201]
    assert len(set(told)) == len(told)
    assert CollaborationSession.objects.filter(pk__in=told).count() == len(told)


def test_a_drained_node_gets_no_new_caller_through_haproxy(balanced, capsys):
    """Issue 21, point 2: a drained server's node answers /readyz 503, HAProxy takes it out
    and every new caller goes to the other; undrained, it is back in the balancer."""
    staff = get_user_model().objects.create_user("script", password="x" * 16, is_superuser=True)  # noqa: S106
    callers = Callers(balanced.url, api_key(staff))
    drained = Server.objects.get(name="routing-a")
    started = time.monotonic()
    server_drain(server_id=drained.pk, actor="test", reason="rolling upgrade")
    wait_until(
        lambda: balanced.status("routing-a").startswith("DOWN"),
        timeout=10,
        message="HAProxy took the drained node out",
        diagnostics=balanced.logs,
    )
    out_after = time.monotonic() - started
    served_before = balanced.requests_served("routing-a")
    answers = [callers.ask(n) for n in range(20)]
    assert [status for status, _ in answers] == [201] * 20
    assert balanced.requests_served("routing-a") == served_before
    sessions = CollaborationSession.objects.filter(pk__in=[session_id for _, session_id in answers])
    assert set(sessions.values_list("server__name", flat=True)) == {"routing-b"}

    started = time.monotonic()
    server_undrain(server_id=drained.pk, actor="test", reason="upgraded")
    wait_until(
        lambda: balanced.status("routing-a") == "UP",
        timeout=15,
        message="HAProxy put the undrained node back",
        diagnostics=balanced.logs,
    )
    back_after = time.monotonic() - started
    with capsys.disabled():
        print(f"\ndrained node out of HAProxy after {out_after * 1000:.0f} ms, back {back_after * 1000:.0f} ms later")


def test_the_shipped_configuration_is_valid_as_installed():
    """What `haproxy -c` says of the file with only its defaults (as a package would install it)."""
    require_haproxy()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLLAB_", "ROUTING_", "HAPROXY_"))}
    check = subprocess.run([HAPROXY, "-c", "-f", str(CONFIG)], env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


# What console.js fetches: the page's path, ?fragment=1, its filters, then ?live_seq=N.
# Thirteen views: enough that a hash spreading them over two nodes puts some on each.
VIEWS = (
    "/partials/overview/",
    "/?fragment=1",
    "/console/sessions/?fragment=1",
    "/console/sessions/?fragment=1&state=active",
    "/console/sessions/?fragment=1&state=queued&page=2",
    "/console/agents/?fragment=1",
    "/console/agents/?fragment=1&state=ready",
    "/console/queue/?fragment=1",
    "/console/timeline/?fragment=1",
    "/console/incidents/?fragment=1",
    "/console/sync/?fragment=1",
    "/console/wizards/?fragment=1",
    "/console/notifications/?fragment=1",
)
FRONTEND_LOG = r"(?P<backend>\w+)/(?P<server>routing-[ab]) .*\"GET (?P<path>\S+) HTTP"


def served_by(balanced: Balanced, log: Path, paths: list[str]) -> dict[str, tuple[str, str]]:
    """GET each path through the balancer (no redirect followed); (backend, node) of each, from HAProxy's log."""
    host, port = balanced.url.removeprefix("http://").split(":")
    for path in paths:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", path, headers={"Host": "localhost"})
        conn.getresponse().read()
        conn.close()

    def logged() -> dict[str, tuple[str, str]]:
        lines = [re.search(FRONTEND_LOG, line) for line in log.read_text(errors="replace").splitlines()]
        return {m["path"]: (m["backend"], m["server"]) for m in lines if m and m["path"] in paths}

    wait_until(lambda: len(logged()) == len(paths), timeout=5, message="every request in HAProxy's log")
    return logged()


def test_every_fetch_of_one_live_view_goes_to_one_node_and_moves_when_it_is_drained(balanced, tmp_path):
    """Issue 18 point 3: a view's render is shared by the watchers of a node, so all of a
    view's fetches (whatever ?live_seq=, and the resync without it) go to one node; other
    requests take turns; a drained node's views move to the other node."""
    log = tmp_path / "haproxy.log"
    fetches_of = lambda view: [f"{view}{'&' if '?' in view else '?'}live_seq={seq}" for seq in (3, 17, 250)]  # noqa: E731
    fetches = [path for view in VIEWS for path in fetches_of(view)] + list(VIEWS)
    plain = [f"/healthz?n={n}" for n in range(6)]

    served = served_by(balanced, log, fetches + plain)

    node_of = {
        view: {served[path] for path in fetches if path.startswith(view + "&") or path == view} for view in VIEWS
    }
    assert all(len(nodes) == 1 for nodes in node_of.values()), node_of
    assert {backend for ((backend, _),) in node_of.values()} == {"live_fragments"}
    assert {server for ((_, server),) in node_of.values()} == {"routing-a", "routing-b"}  # the views spread
    assert {served[path] for path in plain} == {("routing_servers", "routing-a"), ("routing_servers", "routing-b")}

    view_on_a = next(view for view, ((_, server),) in node_of.items() if server == "routing-a")
    server_drain(server_id=Server.objects.get(name="routing-a").pk, actor="test", reason="rolling upgrade")
    wait_until(lambda: balanced.status("routing-a").startswith("DOWN"), timeout=10, message="routing-a out")
    moved = fetches_of(view_on_a)[0].replace("live_seq=3", "live_seq=999")
    assert served_by(balanced, log, [moved]) == {moved: ("live_fragments", "routing-b")}
