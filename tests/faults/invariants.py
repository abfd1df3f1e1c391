"""What must hold after any schedule of faults, read from the database and the audit history.

Each check returns a list of violations (empty when it holds), so a failing run reports
everything that went wrong at once, with the seed that replays it.
"""

from __future__ import annotations

from collections import Counter

from failover.choices import AuditAction, FailoverKind, LinkState, PeerConnection
from failover.models import AuditEntry, FailoverEvent, Link, Peer
from sessions.choices import SessionState
from sessions.models import Agent, CollaborationSession


def one_connected_peer_per_pair() -> list[str]:
    """Never two active links in a pair (the database forbids it: this proves it held)."""
    counts = Counter(
        Peer.objects.filter(connection=PeerConnection.CONNECTED).values_list("server_id", "kind").order_by()
    )
    return [f"pair {pair} has {n} connected peers" for pair, n in counts.items() if n > 1]


def epochs_only_go_up() -> list[str]:
    """No epoch was granted twice on a link, the highest is the link's own, and the connected
    peer holds the link's current epoch."""
    problems = []
    for link in Link.objects.all():
        epochs = list(
            FailoverEvent.objects.filter(link=link, epoch__isnull=False)
            .order_by("epoch")
            .values_list("epoch", flat=True)
        )
        if len(epochs) != len(set(epochs)):
            problems.append(f"{link}: an epoch granted twice: {epochs}")
        if epochs and epochs[-1] != link.epoch:
            problems.append(f"{link}: last event epoch {epochs[-1]} != link epoch {link.epoch}")
        stale = link.peers().filter(connection=PeerConnection.CONNECTED).exclude(connected_epoch=link.epoch)
        if stale.exists():
            problems.append(f"{link}: a connected peer holds an old epoch")
    return problems


def routes_carry_granted_epochs() -> list[str]:
    """No committed route with a stale or invented epoch: every routing decision in the audit
    history names an epoch the Media Blender link really granted, and no higher one."""
    granted: dict[int, set[int]] = {}
    for server_id, epoch in FailoverEvent.objects.filter(
        link__kind="media_blender", to_peer__isnull=False, epoch__isnull=False
    ).values_list("server_id", "epoch"):
        granted.setdefault(server_id, set()).add(epoch)
    sessions = {str(pk): server_id for pk, server_id in CollaborationSession.objects.values_list("pk", "server_id")}
    problems = []
    for object_id, after in AuditEntry.objects.filter(action=AuditAction.SESSION_ROUTED).values_list(
        "object_id", "after"
    ):
        epoch = (after or {}).get("route_epoch")
        if epoch not in granted.get(sessions.get(object_id), set()):
            problems.append(f"session {object_id} routed under epoch {epoch}, never granted")
    return problems


def sessions_legal(expected: set[str], asked: set[str]) -> list[str]:
    """Every promised session exists exactly once, in a legal state, with a reason if ended;
    no session appeared that nobody asked for; no agent holds more than it may."""
    problems = []
    names = Counter(CollaborationSession.objects.values_list("caller_name", flat=True))
    for name, n in names.items():
        if n > 1:
            problems.append(f"{name}: {n} sessions (duplicated)")
        if name not in asked:
            problems.append(f"{name}: a session nobody asked for")
    for name in expected:
        if names[name] != 1:
            problems.append(f"{name}: promised (201) but {names[name]} in the database (lost)")
    for session in CollaborationSession.objects.all():
        state = session.state
        if state == SessionState.ENDED and not (session.end_reason and session.ended_at):
            problems.append(f"{session.pk}: ended without a reason or a time")
        if state in (SessionState.IN_TRANSIT, SessionState.ACTIVE) and not (session.agent_id and session.route_epoch):
            problems.append(f"{session.pk}: {state} without an agent or a route epoch")
        if state == SessionState.QUEUED and session.agent_id:
            problems.append(f"{session.pk}: queued but held by an agent")
    for agent in Agent.objects.all():
        held = agent.sessions.filter(state__in=(SessionState.IN_TRANSIT, SessionState.ACTIVE)).count()
        if held > agent.max_sessions:
            problems.append(f"agent {agent.icm_id} holds {held} > {agent.max_sessions} sessions")
    return problems


def no_server_failed_that_was_not_killed(killed: set[str]) -> list[str]:
    """A server is failed only when its node is gone: a node that was slow (saturated),
    or whose monitor or Redis or worker failed, keeps its agents and sessions."""
    return [
        f"server {name} declared failed though its node was never killed: {reason}"
        for name, reason in FailoverEvent.objects.filter(kind=FailoverKind.SERVER_FAILED).values_list(
            "server__name", "reason"
        )
        if name not in killed
    ]


def pair_healthy(link: Link) -> bool:
    link.refresh_from_db()
    connected = link.peers().filter(connection=PeerConnection.CONNECTED).count()
    return link.state == LinkState.CONNECTED and connected == 1


def all_checks(expected: set[str], asked: set[str], *, killed_servers: set[str] = frozenset()) -> list[str]:
    return [
        *no_server_failed_that_was_not_killed(set(killed_servers)),
        *one_connected_peer_per_pair(),
        *epochs_only_go_up(),
        *routes_carry_granted_epochs(),
        *sessions_legal(expected, asked),
    ]
