"""Planned maintenance on real nodes (issue 21, points 2 and 3): drain a routing server,
SIGTERM its node, start it again, undrain it.

Two real nodes (uvicorn, the project's ASGI application, each with its health monitor),
the drained one holding the monitor's lease. What must hold: the drain hands the queue on
in order and new callers go to the other server; the drained node's /readyz answers 503
"draining"; its agent's desktop hears of the drain at once; SIGTERM hands the monitor's
lease on at once (measured), closes the desktop's WebSocket with 1012 ("service restart"),
and the node exits; the server is then down but not failed: no session ended, no agent
logged out, no alert. Started again and undrained, it takes callers again.
"""

from __future__ import annotations

import json
import signal
import socket as sockets
import time
import urllib.error
import urllib.request
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from failover.choices import AlertKind, FailoverKind, Health
from failover.models import Alert, FailoverEvent, Lease, Server
from failover.monitor.monitor import LEASE_NAME
from failover.services.drain import server_drain, server_undrain
from sessions.choices import AgentState, SessionState
from sessions.models import CollaborationSession
from sessions.services.director import choose_server
from tests.factories import AgentFactory, SessionFactory, api_key
from tests.failover.test_server_failure import two_nodes
from tests.processes import http_status, start_node
from tests.waiting import wait_until
from tests.websockets import session_cookie

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def readyz(base_url: str) -> tuple[int | None, dict]:
    """(status, body) of the node's /readyz."""
    try:
        with urllib.request.urlopen(f"{base_url}/readyz", timeout=5) as response:  # noqa: S310 (our own node)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def agent_socket(base_url: str, agent):
    host = f"localhost:{urlsplit(base_url).port}"
    return ws_connect(
        f"ws://{host}/ws/agent/",
        additional_headers={"Cookie": session_cookie(agent.user), "Origin": f"http://{host}"},
        open_timeout=10,
    )


def next_event(socket, event_type: str, *, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
        if message.get("type") == event_type:
            return message
    pytest.fail(f"no {event_type} within {timeout} s")


def close_code(socket, *, timeout: float = 15) -> int | None:
    """The close code the server sent (reading until it closes)."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            socket.recv(timeout=max(0.1, deadline - time.monotonic()))
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    return None


def sigterm_after_checks(nodes, name, drained, survivor, queued, socket) -> tuple[float, float, int | None]:
    """The drain's effects, then SIGTERM: (when it was sent, seconds until the lease moved,
    the WebSocket's close code)."""
    moved = list(CollaborationSession.objects.filter(pk__in=[s.pk for s in queued]).order_by("queued_at"))
    assert [(s.pk, s.server_id) for s in moved] == [(s.pk, survivor.pk) for s in queued]
    status, body = readyz(drained.base_url)
    assert (status, body["status"], body["drain_reason"]) == (503, "draining", "kernel update")
    assert readyz(survivor.base_url)[0] == 200
    assert choose_server() == survivor

    sent_at = time.monotonic()
    nodes.processes[name].send_signal(signal.SIGTERM)
    wait_until(
        lambda: Lease.objects.get(name=LEASE_NAME).holder.startswith(survivor.name),
        timeout=10,
        message="the other node's monitor took the lease",
        diagnostics=nodes.logs,
    )
    return sent_at, time.monotonic() - sent_at, close_code(socket)


def test_drain_then_sigterm_hands_the_lease_on_at_once_and_ends_nothing(tmp_path, capsys):
    with two_nodes(tmp_path) as nodes:
        name, other = nodes.monitor_holder()
        drained, survivor = nodes.servers[name], nodes.servers[other]
        agent = AgentFactory(server=drained, state=AgentState.READY, max_sessions=2)
        active = SessionFactory(server=drained, state=SessionState.ACTIVE, agent=agent)
        now = timezone.now()
        queued = [SessionFactory(server=drained, queued_at=now + timedelta(seconds=n)) for n in range(3)]
        with agent_socket(drained.base_url, agent) as socket:
            assert json.loads(socket.recv(timeout=10))["type"] == "snapshot"
            server_drain(server_id=drained.pk, actor="test", reason="kernel update")
            pushed = next_event(socket, "server.changed")
            assert pushed["data"]["draining"] is True
            sent_at, lease_moved, code = sigterm_after_checks(nodes, name, drained, survivor, queued, socket)
        nodes.processes[name].wait(timeout=15)
        exited = time.monotonic() - sent_at
        wait_until(
            lambda: Server.objects.get(pk=drained.pk).health == Health.DOWN,
            timeout=15,
            message="the stopped node's server is down",
            diagnostics=nodes.logs,
        )
        judged_down = time.monotonic() - sent_at

        assert code == 1012
        drained.refresh_from_db()
        active.refresh_from_db()
        agent.refresh_from_db()
        assert drained.failed_at is None
        assert (active.state, agent.state) == (SessionState.ACTIVE, AgentState.READY)
        assert not FailoverEvent.objects.filter(kind=FailoverKind.SERVER_FAILED).exists()
        assert FailoverEvent.objects.filter(server=drained, kind=FailoverKind.SERVER_STOPPED).count() == 1
        assert not Alert.objects.filter(kind=AlertKind.SERVER_FAILED).exists()

        # Started again (new code, in a rolling upgrade), then undrained: it takes callers again.
        port = urlsplit(drained.base_url).port
        nodes.processes[name] = start_node(name, port, tmp_path / f"{name}.log")
        wait_until(
            lambda: Server.objects.get(pk=drained.pk).health == Health.UP,
            timeout=30,
            message="the restarted node's server is up",
            diagnostics=nodes.logs,
        )
        assert http_status(f"{drained.base_url}/readyz") == 503
        server_undrain(server_id=drained.pk, actor="test", reason="kernel updated")
        assert http_status(f"{drained.base_url}/readyz") == 200
        assert choose_server(exclude_ids=[survivor.pk]) == drained
        assert not FailoverEvent.objects.filter(kind=FailoverKind.SERVER_FAILED).exists()

    with capsys.disabled():
        print(
            f"\ngraceful stop of a drained node: lease moved {lease_moved * 1000:.0f} ms after SIGTERM, "
            f"node exited after {exited * 1000:.0f} ms, its server judged down (stopped, not failed) "
            f"after {judged_down * 1000:.0f} ms"
        )


def start_request(base_url: str, token: str) -> tuple[sockets.socket, bytes]:
    """A caller's POST sent but for the last bytes of its body: in flight until
    they are sent. Returns the connection and the bytes still to send."""
    body = json.dumps({"caller_name": "In flight", "topic": "graceful stop"}).encode()
    head = (
        f"POST /api/v1/sessions/ HTTP/1.1\r\nHost: localhost\r\nAuthorization: Token {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    connection = sockets.create_connection(("127.0.0.1", urlsplit(base_url).port), timeout=15)
    connection.sendall(head + body[:5])
    return connection, body[5:]


def finish_request(connection: sockets.socket, rest: bytes) -> int:
    """Send the rest of the body; the response's status."""
    connection.sendall(rest)
    answer = b""
    while chunk := connection.recv(65536):
        answer += chunk
    connection.close()
    return int(answer.split(b" ", 2)[1])


def test_sigterm_stops_the_monitor_before_the_node_stops_listening_and_finishes_requests(tmp_path, capsys):
    """Regression: the node used to stop listening first and keep its monitor (and lease)
    until every request was done; meanwhile it probed itself refused and judged its own
    server. Now the lease moves while a request is still in flight, and that request is
    answered before the node exits."""
    staff = get_user_model().objects.create_user("script", password="x" * 16, is_superuser=True)  # noqa: S106
    token = api_key(staff)
    with two_nodes(tmp_path) as nodes:
        name, other = nodes.monitor_holder()
        drained = nodes.servers[name]
        server_drain(server_id=drained.pk, actor="test", reason="rolling upgrade")
        connection, rest = start_request(drained.base_url, token)
        sent_at = time.monotonic()
        nodes.processes[name].send_signal(signal.SIGTERM)
        wait_until(
            lambda: Lease.objects.get(name=LEASE_NAME).holder.startswith(other),
            timeout=2.5,
            message="the lease moved while a request was still in flight",
            diagnostics=nodes.logs,
        )
        lease_moved = time.monotonic() - sent_at
        wait_until(
            lambda: http_status(f"{drained.base_url}/healthz", timeout=0.5) is None,
            timeout=10,
            message="the stopping node stopped listening",
            diagnostics=nodes.logs,
        )
        assert nodes.processes[name].poll() is None  # still finishing the request in flight
        assert finish_request(connection, rest) == 201
        nodes.processes[name].wait(timeout=15)
        wait_until(
            lambda: Server.objects.get(pk=drained.pk).health == Health.DOWN,
            timeout=15,
            message="the stopped node's server is down",
            diagnostics=nodes.logs,
        )
        assert not FailoverEvent.objects.filter(kind=FailoverKind.SERVER_FAILED).exists()
        assert CollaborationSession.objects.get(caller_name="In flight").server.name == other
    with capsys.disabled():
        print(f"\nlease moved {lease_moved * 1000:.0f} ms after SIGTERM, a request still in flight")
