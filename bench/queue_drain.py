"""Queue drain (issue 7, point 6): 1,000 queued sessions, 1,000 ready agents, a Media
Blender switchover completes: how long until every session is routed.

Real processes: two Media Blender simulators, a web node (uvicorn with the health
monitor), a Celery worker (prefork, 2 processes, as ``collabadmin.stack`` runs it), the
run's Redis and database. The server gets ``--agents`` logged-in, ready agents and
``--sessions`` queued sessions (bulk inserts: nothing is routed yet, the connected primary
knows no agent). Then the connected primary is SIGKILLed: the monitor switches to the
standby, and the switchover's follow-up (a Celery task sent on commit) registers every
agent with the new Media Blender and drains the queue, oldest first, through it.

Reported: from the switchover's commit (``FailoverEvent.completed_at``) and from the kill,
until the last session left the queue (max ``routed_at``; every session must be in
transit or active). Target: ≤ 2 s after the switchover completes.

Run: ``.venv/bin/python -m bench.queue_drain [--quick] [--sessions N] [--agents N]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from bench._common import format_table, loadavg_1m, write_results
from bench._stack import PySpy, connected_peer_id, django_stack, media_blender_pair, wait_until

TARGET_S = 2.0


def seed(server_id: int, agents: int, sessions: int) -> None:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from sessions.choices import AgentState, SessionState
    from sessions.models import Agent, CollaborationSession

    now = timezone.now()
    User = get_user_model()  # noqa: N806
    names = [f"drain-agent-{n:05d}" for n in range(agents)]
    User.objects.bulk_create(User(username=name) for name in names)
    users = User.objects.filter(username__in=names).order_by("username")
    Agent.objects.bulk_create(
        Agent(
            user=user,
            server_id=server_id,
            icm_id=f"A{n:05d}",
            state=AgentState.READY,
            state_changed_at=now,
            logged_in_at=now,
        )
        for n, user in enumerate(users)
    )
    CollaborationSession.objects.bulk_create(
        (
            CollaborationSession(
                server_id=server_id,
                caller_name=f"Caller {n}",
                any_skill_group=True,
                state=SessionState.QUEUED,
                queued_at=now - timedelta(seconds=sessions - n),
            )
            for n in range(sessions)
        ),
        batch_size=2000,
    )


def run(agents: int, sessions: int, profile: bool = False) -> dict[str, Any]:
    with django_stack("drain") as stack:
        from django.db.models import Count, Max

        from failover.models import FailoverEvent
        from sessions.choices import SessionState
        from sessions.models import CollaborationSession

        link, sims, peers = media_blender_pair(stack)
        worker = stack.worker()
        node = stack.node(monitor=True)
        del node
        wait_until(lambda: connected_peer_id(link.pk) is not None, 30, "a Media Blender connected")
        from bench.failover_crash import _put_primary_in_front

        _put_primary_in_front(link, peers[0], peers[1])
        seed(link.server_id, agents, sessions)
        time.sleep(1.0)
        load = loadavg_1m()
        profiler = PySpy(worker.pid, 20, "queue_drain-worker", subprocesses=True) if profile else None
        killed_wall = time.time()
        started = time.monotonic()
        sims[0].kill()
        wait_until(lambda: connected_peer_id(link.pk) == peers[1].pk, 15, "switchover to the standby", 0.005)
        switched_s = time.monotonic() - started
        queued = CollaborationSession.objects.filter(server_id=link.server_id, state=SessionState.QUEUED)
        wait_until(lambda: not queued.exists(), 120, "queue drained", 0.01)
        observed_s = time.monotonic() - started
        if profiler is not None:
            profiler.stop()
        event = FailoverEvent.objects.filter(link_id=link.pk, to_peer_id=peers[1].pk).latest("completed_at")
        last_routed = CollaborationSession.objects.filter(server_id=link.server_id).aggregate(m=Max("routed_at"))["m"]
        states = dict(
            CollaborationSession.objects.filter(server_id=link.server_id).values_list("state").annotate(n=Count("pk"))
        )
        from_switchover = (last_routed - event.completed_at).total_seconds()
        return {
            "agents": agents,
            "sessions": sessions,
            "switchover_after_kill_s": round(switched_s, 3),
            "drained_after_switchover_s": round(from_switchover, 3),
            "drained_after_kill_s": round(last_routed.timestamp() - killed_wall, 3),
            "observed_after_kill_s": round(observed_s, 3),
            "states": states,
            "load_1m": load,
            "database": stack.database_kind,
            "rate_per_s": round(sessions / from_switchover, 1) if from_switchover > 0 else None,
        }


def table(r: dict[str, Any]) -> str:
    headers = ["sessions", "agents", "kill → switch s", "switch → all routed s", "kill → all routed s", "sessions/s"]
    row = [r["sessions"], r["agents"], r["switchover_after_kill_s"], r["drained_after_switchover_s"]]
    row += [r["drained_after_kill_s"], r["rate_per_s"]]
    return format_table(headers, [row]) + f"\n\nFinal states: {r['states']}."


def figures(r: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "benchmark": "queue_drain",
            "figure": f"{r['sessions']} queued, {r['agents']} ready agents: switchover → all routed",
            "value": f"{r['drained_after_switchover_s']:.2f} s ({r['rate_per_s']} sessions/s)",
            "target": f"≤ {TARGET_S:g} s",
            "met": r["drained_after_switchover_s"] <= TARGET_S,
        }
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 sessions and agents")
    parser.add_argument("--sessions", type=int, default=None, help="default 1000")
    parser.add_argument("--agents", type=int, default=None, help="default 1000")
    parser.add_argument("--profile", action="store_true", help="py-spy the worker during the drain")
    parser.add_argument("--output", default="queue_drain")
    args = parser.parse_args(argv)
    size = 100 if args.quick else 1000
    started = time.monotonic()
    result = run(args.agents or size, args.sessions or size, args.profile)
    print(table(result))
    data = {
        "benchmark": "queue_drain",
        "duration_s": round(time.monotonic() - started, 1),
        "result": result,
        "figures": figures(result),
    }
    print(f"\nwritten: {write_results(args.output, data)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
