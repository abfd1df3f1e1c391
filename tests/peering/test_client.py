"""The client adapter against real simulator processes: failures, faults and bad input."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import time

import pytest

from failover.peering import protocol
from failover.peering.client import (
    PeerConnection,
    PeerError,
    PeerUnavailable,
    call_once,
    call_sync,
    probe,
    probe_sync,
)

DETECTION_BUDGET_S = 2.0


def test_open_says_hello_and_reports_the_kind_and_name_of_the_peer(media_blender, run):
    async def scenario() -> None:
        async with await PeerConnection.open(media_blender.host, media_blender.port) as conn:
            assert conn.info is not None
            assert (conn.info.kind, conn.info.name, conn.info.protocol) == ("media-blender", "mb-test", 1)
            assert "route" in conn.info.ops

    run(scenario())


def test_open_fails_with_wrong_kind_when_the_peer_is_not_the_expected_kind(admin_workstation, run):
    async def scenario() -> None:
        with pytest.raises(PeerError) as error:
            await PeerConnection.open(admin_workstation.host, admin_workstation.port, expect_kind="media-blender")
        assert error.value.code == "wrong_kind"

    run(scenario())


def test_hello_with_an_unsupported_protocol_version_is_refused(media_blender, run):
    async def scenario() -> None:
        with pytest.raises(PeerError) as error:
            await call_once(media_blender.host, media_blender.port, "hello", hello=False, protocol=99)
        assert error.value.code == "unsupported_version"

    run(scenario())


def test_closed_fires_within_two_seconds_of_a_sigkill_and_pending_calls_fail_at_once(media_blender, run):
    async def scenario() -> None:
        conn = await PeerConnection.open(media_blender.host, media_blender.port)
        # Stall the peer so the call below is genuinely waiting when the process dies.
        await call_once(media_blender.host, media_blender.port, "fault", stall=True)
        pending = asyncio.create_task(conn.call("ping", timeout=30))
        await asyncio.sleep(0)  # let the request go out
        started = time.monotonic()

        media_blender.process.send_signal(signal.SIGKILL)

        await asyncio.wait_for(conn.closed.wait(), DETECTION_BUDGET_S)
        with pytest.raises(PeerUnavailable) as error:
            await asyncio.wait_for(pending, DETECTION_BUDGET_S)
        assert error.value.reason == "closed"
        assert time.monotonic() - started < DETECTION_BUDGET_S
        # FIN, or RST if the kernel still held the unread request when the process died.
        assert conn.close_reason is not None
        assert conn.close_reason.startswith(("closed by peer", "reset"))
        with pytest.raises(PeerUnavailable):
            await conn.call("ping")
        await conn.close()

    run(scenario())


def test_probe_of_a_sigstopped_simulator_times_out_and_succeeds_again_after_sigcont(media_blender, run):
    async def scenario() -> None:
        assert (await probe(media_blender.host, media_blender.port, timeout=2)).ok
        media_blender.signal(signal.SIGSTOP)
        try:
            stopped = await probe(media_blender.host, media_blender.port, timeout=0.5)
        finally:
            media_blender.signal(signal.SIGCONT)

        assert not stopped.ok
        assert stopped.error is not None
        assert stopped.error.startswith("timeout:")
        assert stopped.latency_ms >= 500
        resumed = await probe(media_blender.host, media_blender.port, timeout=2)
        assert resumed.ok, resumed.error

    run(scenario())


def test_latency_fault_delays_every_reply_by_at_least_the_latency_and_clear_removes_it(media_blender, run):
    async def scenario() -> None:
        await call_once(media_blender.host, media_blender.port, "fault", latency_ms=200)
        slow = await probe(media_blender.host, media_blender.port, timeout=2)
        assert slow.ok
        assert slow.latency_ms >= 200
        async with await PeerConnection.open(media_blender.host, media_blender.port) as conn:
            started = time.monotonic()
            await conn.call("icm_status")
            assert time.monotonic() - started >= 0.2
            await conn.call("fault", clear=True)
            fast = await conn.probe(timeout=2)
            assert fast.ok
            assert fast.latency_ms < 200

    run(scenario())


def test_a_late_reply_after_a_timeout_is_discarded_and_the_connection_stays_usable(media_blender, run):
    async def scenario() -> None:
        async with await PeerConnection.open(media_blender.host, media_blender.port) as conn:
            await conn.call("fault", latency_ms=300)
            with pytest.raises(PeerUnavailable) as error:
                await conn.call("ping", timeout=0.05)
            assert error.value.reason == "timeout"
            await conn.call("fault", clear=True)  # queued behind the late ping reply

            assert await conn.call("icm_status") == {"side": "A", "connected": True}
            assert not conn.closed.is_set()

    run(scenario())


def test_stall_fault_times_calls_out_without_closing_the_connection(media_blender, run):
    async def scenario() -> None:
        async with await PeerConnection.open(media_blender.host, media_blender.port) as conn:
            await conn.call("fault", stall=True)

            stalled = await conn.probe(timeout=0.3)
            fresh = await probe(media_blender.host, media_blender.port, timeout=0.3)

            assert not stalled.ok
            assert stalled.error is not None
            assert stalled.error.startswith("timeout:")
            assert not fresh.ok
            assert fresh.error is not None
            assert fresh.error.startswith("timeout:")
            assert not conn.closed.is_set()
            await conn.call("fault", clear=True)  # fault ops are exempt from the stall
            assert (await conn.probe(timeout=2)).ok

    run(scenario())


def test_refuse_fault_refuses_new_connections_drops_open_ones_and_clear_restores_them(media_blender, run):
    async def scenario() -> None:
        conn = await PeerConnection.open(media_blender.host, media_blender.port)

        refused = await asyncio.to_thread(media_blender.ctl, "fault", "refuse")

        assert refused.returncode == 0, refused.stderr
        await asyncio.wait_for(conn.closed.wait(), DETECTION_BUDGET_S)
        result = await probe(media_blender.host, media_blender.port, timeout=2)
        assert not result.ok
        assert result.error is not None
        assert result.error.startswith("refused:")
        cleared = await asyncio.to_thread(media_blender.ctl, "fault", "clear", via_control=True)
        assert cleared.returncode == 0, cleared.stderr
        assert json.loads(cleared.stdout)["faults"] == {"latency_ms": 0, "stall": False, "refuse": False}
        restored = await probe(media_blender.host, media_blender.port, timeout=2)
        assert restored.ok, restored.error

    run(scenario())


def test_ctl_reports_an_unreachable_peer_with_exit_status_2(media_blender):
    assert media_blender.ctl("fault", "refuse").returncode == 0

    result = media_blender.ctl("fault", "show")

    assert result.returncode == 2
    assert "refused" in result.stderr


def test_probe_of_a_port_nobody_listens_on_reports_connection_refused(run):
    with socket.socket() as bound_not_listening:  # holds the port so nobody else takes it
        bound_not_listening.bind(("127.0.0.1", 0))
        port = bound_not_listening.getsockname()[1]

        result = run(probe("127.0.0.1", port, timeout=1))

    assert not result.ok
    assert result.error is not None
    assert result.error.startswith("refused:")


async def _exchange(port: int, payload: bytes, replies: int) -> list[dict]:
    """Send raw bytes, read ``replies`` lines (no client adapter: we want to send garbage)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=protocol.MAX_FRAME_BYTES)
    try:
        writer.write(payload)
        await writer.drain()
        return [json.loads(await reader.readuntil(b"\n")) for _ in range(replies)]
    finally:
        writer.close()


def test_malformed_lines_get_error_replies_and_the_simulator_keeps_serving(media_blender, run):
    lines = [
        b"this is not json",
        b"[1, 2]",
        b'{"op": "ping"}',
        b'{"id": 2}',
        b'{"id": 3, "op": "does_not_exist"}',
        b'{"id": 4, "op": "ping", "x": NaN}',
        b"\xff\xfe",
        b"[" * 100_000,
        b'{"id": 5, "op": "ping"}',
    ]

    replies = run(_exchange(media_blender.port, b"\n".join(lines) + b"\n", len(lines)))

    codes = [(r["id"], r["ok"] or r["error"]["code"]) for r in replies]
    assert codes == [
        (None, "bad_request"),
        (None, "bad_request"),
        (None, "bad_request"),
        (2, "bad_request"),
        (3, "unknown_op"),
        (None, "bad_request"),
        (None, "bad_request"),
        (None, "bad_request"),
        (5, True),
    ]
    assert run(probe(media_blender.host, media_blender.port, timeout=2)).ok


def test_an_oversize_line_gets_frame_too_large_and_the_connection_keeps_working(media_blender, run):
    huge = b'{"id": 1, "op": "ping", "pad": "' + b"x" * (protocol.MAX_FRAME_BYTES + 10) + b'"}\n'

    replies = run(_exchange(media_blender.port, huge + b'{"id": 2, "op": "ping"}\n', 2))

    assert replies[0]["error"]["code"] == "frame_too_large"
    assert replies[1]["id"] == 2
    assert replies[1]["ok"] is True


def test_call_sync_and_probe_sync_work_without_an_event_loop(media_blender):
    registered = call_sync(
        media_blender.host, media_blender.port, "register_agent", agent_id="a1", skill_groups=["sales"]
    )

    assert registered["agent"]["state"] == "not_ready"
    result = probe_sync(media_blender.host, media_blender.port, timeout=2)
    assert result.ok
    assert result.details["kind"] == "media-blender"
    assert result.details["name"] == "mb-test"
    with pytest.raises(PeerError) as error:
        call_sync(media_blender.host, media_blender.port, "set_agent_state", agent_id="a1", state="away")
    assert error.value.code == "invalid"


def test_call_many_pipelines_requests_and_answers_each_in_order_with_its_own_error(media_blender):
    from sessions.media_blender_client import MediaBlenderClient, MediaBlenderPeer

    peer = MediaBlenderPeer(peer_id=1, name="mb-test", host=media_blender.host, port=media_blender.port)
    requests = [
        ("register_agent", {"agent_id": "a1", "skill_groups": ["sales"], "state": "ready"}),
        ("register_agent", {"agent_id": "a2", "skill_groups": ["sales"], "state": "ready"}),
        *[("route", {"session_id": f"s{n}", "skill_group": "sales"}) for n in range(3)],
        ("no_such_op", {}),
        ("list_routes", {}),
    ]

    with MediaBlenderClient(peer) as mb:
        results = mb.call_many(requests)

    assert [r["agent"]["agent_id"] for r in results[:2]] == ["a1", "a2"]
    # Handled in the order sent: the first two sessions got the two agents, the third none.
    assert sorted(r["agent_id"] for r in results[2:4]) == ["a1", "a2"]
    assert isinstance(results[4], PeerError)
    assert results[4].code == "no_agent_available"
    assert isinstance(results[5], PeerError)
    assert results[5].code == "unknown_op"
    assert sorted(route["session_id"] for route in results[6]["routes"]) == ["s0", "s1"]


def test_call_many_raises_nothing_but_reports_unavailable_when_the_peer_dies(media_blender):
    from sessions.media_blender_client import MediaBlenderClient, MediaBlenderPeer

    peer = MediaBlenderPeer(peer_id=1, name="mb-test", host=media_blender.host, port=media_blender.port)
    with MediaBlenderClient(peer, timeout=1) as mb:
        media_blender.process.send_signal(signal.SIGKILL)
        media_blender.process.wait()
        results = mb.call_many([("ping", {}), ("ping", {})])

    assert all(isinstance(result, PeerUnavailable) for result in results)


def test_one_process_serves_many_independent_peers_reachable_through_one_control_port(start_peer, run):
    peers = start_peer("media-blender", "--port", "0", "--count", "5")
    ports = [int(p) for p in peers.ready["ports"].split(",")]

    async def scenario() -> None:
        assert len(set(ports)) == 5
        await call_once("127.0.0.1", ports[0], "register_agent", agent_id="only-here", skill_groups=["sales"])
        listed = [(await call_once("127.0.0.1", p, "list_agents"))["agents"] for p in ports]
        assert [len(agents) for agents in listed] == [1, 0, 0, 0, 0]
        control = await call_once("127.0.0.1", peers.control_port, "list_peers", hello=False)
        assert sorted(p["port"] for p in control["peers"]) == sorted(ports)
        via_control = await call_once("127.0.0.1", peers.control_port, "list_agents", hello=False, peer=ports[0])
        assert via_control["agents"][0]["agent_id"] == "only-here"

    run(scenario())


def test_the_simulator_exits_with_status_0_on_sigterm(media_blender):
    media_blender.signal(signal.SIGTERM)

    assert media_blender.process.wait(timeout=5) == 0


def test_manage_py_runpeer_runs_the_same_simulator(start_peer, run):
    """The Django command is a thin wrapper: same options, same ready line, same protocol."""
    peer = start_peer(
        "admin-workstation",
        "--name",
        "aw-django",
        launcher=[sys.executable, "manage.py", "runpeer"],
        env={"DEBUG": "1"},
    )

    result = run(probe(peer.host, peer.port, timeout=2))

    assert result.ok
    assert result.details["name"] == "aw-django"
    peer.signal(signal.SIGTERM)
    assert peer.process.wait(timeout=10) == 0
