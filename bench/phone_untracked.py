"""Phone state after a Media Blender switchover (issue 20, point 1): what marking the old
MB's calls *unknown* costs, and that it stays out of the switchover itself.

A switchover sends ``sessions.mark_phone_untracked`` on its commit; that task marks every
active session whose phone leg the old MB set up (an audit entry and a live update each)
in a transaction of its own. This runs a manual switchover (the service, no processes)
with 0 and then N active sessions of one server and reports how long the switchover took
and how long the marking took afterwards, on the run's database.

Run: ``.venv/bin/python -m bench.phone_untracked [--sessions N]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from bench._common import format_table, write_results
from bench._stack import django_stack


def seed(server_id: int, peer_id: int, sessions: int, prefix: str) -> None:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from sessions.choices import AgentState, PhoneLeg, SessionState
    from sessions.models import Agent, CollaborationSession

    now = timezone.now()
    user = get_user_model().objects.create(username=f"{prefix}-agent")
    agent = Agent.objects.create(
        user=user, server_id=server_id, icm_id=f"{prefix}-1", state=AgentState.READY, max_sessions=max(sessions, 1)
    )
    CollaborationSession.objects.bulk_create(
        CollaborationSession(
            server_id=server_id,
            agent=agent,
            any_skill_group=True,
            caller_name=f"Caller {n}",
            state=SessionState.ACTIVE,
            queued_at=now,
            routed_at=now,
            activated_at=now,
            route_epoch=0,
            phone_leg=PhoneLeg.CONNECTED,
            phone_peer_id=peer_id,
            phone_epoch=0,
        )
        for n in range(sessions)
    )


def switchover_seconds(sessions: int, name: str) -> tuple[float, float, int]:
    """(seconds the switchover service took, seconds the marking took, sessions marked
    unknown) for a fresh server."""
    from failover.choices import Health, PeerKind, PeerPriority
    from failover.models import Link, Peer
    from failover.services.switchover import link_switchover
    from failover.services.topology import peer_ensure, server_ensure
    from sessions.choices import PhoneLeg
    from sessions.models import CollaborationSession
    from sessions.services.phone_tracking import sessions_mark_phone_untracked

    server = server_ensure(name=name)
    peers = [
        peer_ensure(
            server=server, kind=PeerKind.MEDIA_BLENDER, priority=p, name=f"{name}-mb-{int(p)}", host="127.0.0.1", port=9
        )
        for p in (PeerPriority.PRIMARY, PeerPriority.SECONDARY)
    ]
    Peer.objects.filter(pk__in=[p.pk for p in peers]).update(health=Health.UP)
    link = Link.objects.get(server=server, kind=PeerKind.MEDIA_BLENDER)
    link_switchover(link_id=link.pk, actor="system:bench", reason="connect the primary", to_peer_id=peers[0].pk)
    seed(server.pk, peers[0].pk, sessions, name)
    started = time.perf_counter()
    link_switchover(link_id=link.pk, actor="system:bench", reason="bench", to_peer_id=peers[1].pk)
    switched = time.perf_counter() - started
    started = time.perf_counter()
    sessions_mark_phone_untracked(link_id=link.pk)
    marking = time.perf_counter() - started
    marked = CollaborationSession.objects.filter(server=server, phone_leg=PhoneLeg.UNKNOWN).count()
    return switched, marking, marked


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    args = parser.parse_args(argv)
    with django_stack("phone-untracked") as stack:
        rows = []
        for count in (0, args.sessions):
            switched, marking, marked = switchover_seconds(count, f"bench-phone-{count}")
            assert marked == count, (marked, count)
            rows.append([count, marked, round(switched * 1000, 1), round(marking * 1000, 1)])
        database = stack.database_kind
    print(f"Manual Media Blender switchover, {database}:")
    print(format_table(["active sessions", "marked unknown", "switchover ms", "marking ms"], rows))
    write_results("phone_untracked", {"database": database, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
