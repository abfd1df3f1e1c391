"""The heartbeats' Redis run id (common/heartbeat.py): the sockets of a process share one ask
of it every half second instead of a thread hop per socket and beat."""

from __future__ import annotations

import asyncio
import math

from common import heartbeat, live


def test_the_sockets_of_a_process_share_one_ask_of_the_run_id(monkeypatch):
    asked = []
    monkeypatch.setattr(live, "redis_run_id", lambda: asked.append(1) or f"run-{len(asked)}")
    monkeypatch.setattr(heartbeat, "_asked", (-math.inf, None))

    async def beats() -> list[str | None]:
        return [await heartbeat.shared_run_id() for _ in range(1000)]

    assert set(asyncio.run(beats())) == {"run-1"}
    assert len(asked) == 1


def test_a_new_run_id_is_asked_again_after_the_shared_interval(monkeypatch):
    names = iter(["before-restart", "after-restart"])
    monkeypatch.setattr(live, "redis_run_id", lambda: next(names))
    monkeypatch.setattr(heartbeat, "_asked", (-math.inf, None))
    monkeypatch.setattr(heartbeat, "RUN_ID_SHARED_SECONDS", 0.0)

    async def two_beats() -> list[str | None]:
        return [await heartbeat.shared_run_id(), await heartbeat.shared_run_id()]

    assert asyncio.run(two_beats()) == ["before-restart", "after-restart"]


def test_redis_away_is_asked_again_at_the_next_beat(monkeypatch):
    answers = iter([None, "back"])
    monkeypatch.setattr(live, "redis_run_id", lambda: next(answers))
    monkeypatch.setattr(heartbeat, "_asked", (-math.inf, None))

    async def two_beats() -> list[str | None]:
        return [await heartbeat.shared_run_id(), await heartbeat.shared_run_id()]

    assert asyncio.run(two_beats()) == [None, "back"]
