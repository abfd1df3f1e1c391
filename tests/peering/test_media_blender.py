"""The Media Blender simulator, driven over real sockets through the client adapter."""

from __future__ import annotations

import asyncio
import time

import pytest

from failover.peering.client import PeerConnection, PeerError

EVENT_WAIT_S = 2.0


async def _register(conn: PeerConnection, agent_id: str, skill_groups: list[str], **extra: object) -> None:
    await conn.call("register_agent", agent_id=agent_id, skill_groups=skill_groups, **extra)


def test_route_picks_a_ready_agent_of_the_skill_group_and_a_route_confirmed_event_follows(media_blender, run):
    async def scenario() -> None:
        events: asyncio.Queue[dict] = asyncio.Queue()
        async with await PeerConnection.open(media_blender.host, media_blender.port, events=events) as conn:
            await _register(conn, "support-ready", ["support"], state="ready")
            await _register(conn, "sales-not-ready", ["sales"])
            await _register(conn, "sales-ready", ["sales", "support"], state="ready")

            routed = await conn.call("route", session_id="s1", skill_group="sales")

            assert routed == {"session_id": "s1", "agent_id": "sales-ready", "existing": False}
            confirmed = await asyncio.wait_for(events.get(), EVENT_WAIT_S)
            assert confirmed == {"event": "route_confirmed", "session_id": "s1", "agent_id": "sales-ready"}
            (route,) = (await conn.call("list_routes"))["routes"]
            assert route["confirmed"] is True
            assert route["agent_id"] == "sales-ready"

    run(scenario())


def test_route_prefers_the_fewest_sessions_then_the_longest_available_agent(media_blender, run):
    async def scenario() -> None:
        async with await PeerConnection.open(media_blender.host, media_blender.port) as conn:
            await _register(conn, "first", ["sales"], max_sessions=2, state="ready")
            await _register(conn, "second", ["sales"], max_sessions=2, state="ready")

            async def route(session_id: str) -> str:
                return (await conn.call("route", session_id=session_id, skill_group="sales"))["agent_id"]

            assert await route("s1") == "first"  # both idle: ready longest
            assert await route("s2") == "second"  # fewest sessions
            assert await route("s3") == "first"  # one each: ready longest
            await conn.call("release", session_id="s1")  # first is available again: back of the line
            assert await route("s4") == "second"

    run(scenario())


def test_route_answers_no_agent_available_when_no_ready_agent_of_the_skill_group_has_a_free_slot(media_blender, run):
    async def scenario() -> None:
        async with await PeerConnection.open(media_blender.host, media_blender.port) as conn:
            await _register(conn, "busy", ["sales"], state="ready")
            await _register(conn, "not-ready", ["sales"])
            await _register(conn, "other-skill", ["support"], state="ready")
            await conn.call("route", session_id="s1", skill_group="sales")

            with pytest.raises(PeerError) as error:
                await conn.call("route", session_id="s2", skill_group="sales")

            assert error.value.code == "no_agent_available"
            assert [r["session_id"] for r in (await conn.call("list_routes"))["routes"]] == ["s1"]

    run(scenario())


def test_routing_the_same_session_twice_returns_the_same_agent_without_taking_a_second_slot(media_blender, run):
    async def scenario() -> None:
        async with await PeerConnection.open(media_blender.host, media_blender.port) as conn:
            await _register(conn, "a1", ["sales"], max_sessions=3, state="ready")
            await _register(conn, "a2", ["sales"], max_sessions=3, state="ready")

            first = await conn.call("route", session_id="s1", skill_group="sales")
            retry = await conn.call("route", session_id="s1", skill_group="sales")

            assert retry == {**first, "existing": True}
            agents = {a["agent_id"]: a["sessions"] for a in (await conn.call("list_agents"))["agents"]}
            assert sorted(agents.values()) == [[], ["s1"]]

    run(scenario())


def test_release_frees_the_agent_slot_for_the_next_session(media_blender, run):
    async def scenario() -> None:
        async with await PeerConnection.open(media_blender.host, media_blender.port) as conn:
            await _register(conn, "a1", ["sales"], state="ready")
            await conn.call("route", session_id="s1", skill_group="sales")
            with pytest.raises(PeerError, match="no_agent_available"):
                await conn.call("route", session_id="s2", skill_group="sales")

            assert await conn.call("release", session_id="s1") == {"session_id": "s1", "agent_id": "a1"}

            assert (await conn.call("route", session_id="s2", skill_group="sales"))["agent_id"] == "a1"
            with pytest.raises(PeerError) as error:
                await conn.call("release", session_id="s1")
            assert error.value.code == "not_found"

    run(scenario())


def test_route_confirmed_waits_for_the_configured_confirm_delay(media_blender, run):
    async def scenario() -> None:
        events: asyncio.Queue[dict] = asyncio.Queue()
        async with await PeerConnection.open(media_blender.host, media_blender.port, events=events) as conn:
            await conn.call("configure", confirm_delay_ms=300)
            await _register(conn, "a1", ["sales"], state="ready")
            started = time.monotonic()

            await conn.call("route", session_id="s1", skill_group="sales")
            assert (await conn.call("list_routes"))["routes"][0]["confirmed"] is False
            event = await asyncio.wait_for(events.get(), EVENT_WAIT_S)

            assert event["event"] == "route_confirmed"
            assert time.monotonic() - started >= 0.3

    run(scenario())


def test_ctl_hangup_pushes_phone_hung_up_and_keeps_the_route(media_blender, run):
    async def scenario() -> None:
        events: asyncio.Queue[dict] = asyncio.Queue()
        async with await PeerConnection.open(media_blender.host, media_blender.port, events=events) as conn:
            await _register(conn, "a1", ["sales"], state="ready")
            await conn.call("route", session_id="s1", skill_group="sales")
            assert (await asyncio.wait_for(events.get(), EVENT_WAIT_S))["event"] == "route_confirmed"

            result = await asyncio.to_thread(media_blender.ctl, "hangup", "s1")

            assert result.returncode == 0, result.stderr
            hung_up = await asyncio.wait_for(events.get(), EVENT_WAIT_S)
            assert hung_up == {"event": "phone_hung_up", "session_id": "s1", "agent_id": "a1"}
            (route,) = (await conn.call("list_routes"))["routes"]
            assert route["phone"] == "hung_up"  # the web session is not ended by the hangup

    run(scenario())


def test_hangup_of_an_unknown_session_is_not_found(media_blender):
    result = media_blender.ctl("hangup", "nobody")

    assert result.returncode == 1
    assert "not_found" in result.stderr


def test_icm_status_reports_side_a_and_ctl_set_icm_side_pushes_icm_side_changed(media_blender, run):
    async def scenario() -> None:
        received: list[dict] = []
        changed = asyncio.Event()

        def on_event(message: dict) -> None:
            received.append(message)
            changed.set()

        async with await PeerConnection.open(media_blender.host, media_blender.port, on_event=on_event) as conn:
            assert await conn.call("icm_status") == {"side": "A", "connected": True}

            result = await asyncio.to_thread(media_blender.ctl, "set-icm-side", "none")

            assert result.returncode == 0, result.stderr
            await asyncio.wait_for(changed.wait(), EVENT_WAIT_S)
            assert received == [{"event": "icm_side_changed", "previous": "A", "side": None, "connected": False}]
            assert await conn.call("icm_status") == {"side": None, "connected": False}

    run(scenario())


def test_agent_operations_reject_unknown_agents_bad_states_and_unexpected_arguments(media_blender, run):
    async def scenario() -> None:
        async with await PeerConnection.open(media_blender.host, media_blender.port) as conn:
            await _register(conn, "a1", ["sales"])
            attempts = [
                ("set_agent_state", {"agent_id": "ghost", "state": "ready"}, "not_found"),
                ("set_agent_state", {"agent_id": "a1", "state": "busy"}, "invalid"),
                ("register_agent", {"agent_id": "a2", "skill_group": ["sales"]}, "invalid"),
                ("register_agent", {"agent_id": "", "skill_groups": []}, "invalid"),
                ("route", {"session_id": "s1"}, "invalid"),
                ("unregister_agent", {"agent_id": "ghost"}, "not_found"),
            ]
            for op, args, code in attempts:
                with pytest.raises(PeerError) as error:
                    await conn.call(op, **args)
                assert error.value.code == code, (op, args)

    run(scenario())


def test_unregistering_an_agent_releases_its_sessions(media_blender, run):
    async def scenario() -> None:
        async with await PeerConnection.open(media_blender.host, media_blender.port) as conn:
            await _register(conn, "a1", ["sales"], state="ready")
            await conn.call("route", session_id="s1", skill_group="sales")

            assert await conn.call("unregister_agent", agent_id="a1") == {"released": ["s1"]}

            assert (await conn.call("list_routes"))["routes"] == []
            assert (await conn.call("list_agents"))["agents"] == []

    run(scenario())
