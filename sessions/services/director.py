"""The built-in Local Director: which routing server takes a new request."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from failover.choices import Health, LinkState, PeerKind, ServerRole
from failover.models import Link, Server
from sessions.choices import ROUTED_STATES, AgentState, SessionState
from sessions.models import Agent, CollaborationSession, SkillGroup

# What a 503 tells callers and load balancers: the monitor re-probes every second, so a
# recovered server is back within a few seconds.
RETRY_AFTER_SECONDS = 5


class NoHealthyServer(Exception):
    """No routing server can take a new request right now."""

    retry_after = RETRY_AFTER_SECONDS


@dataclass(frozen=True)
class SkillGroupKey:
    """The skill group a request needs. Each server keeps its own copy of the ICM's skill
    groups, so it is looked up on each server: by name (what a caller picks) or, when
    known, by ICM id (a session moved off a failed server); either matches."""

    name: str
    icm_id: str | None = None


def choose_server(*, skill_group: SkillGroupKey | None = None, exclude_ids: Iterable[int] = ()) -> Server:
    """The routing server that takes a new request needing ``skill_group`` (``None``: any
    agent will do).

    Eligible: a routing server, not draining, healthy (one without ``base_url`` is not monitored and
    counts as healthy: a single-node install), not excluded. Among them, in order: one
    that has the skill group; one that can serve the request now (its Media Blender link
    is connected and an enabled, ready agent of the skill group has a free slot); the
    fewest open sessions; the name. A degraded server (up but slow) comes after every
    other: it keeps its work, new callers go elsewhere while they can. Raises
    ``NoHealthyServer`` when none is eligible.
    """
    excluded = [int(pk) for pk in exclude_ids]
    sql, params = _director_query(len(excluded), skill_group is not None)
    group = (skill_group.name, skill_group.icm_id) if skill_group is not None else ()
    server = next(iter(Server.objects.raw(sql, _bind(params, excluded=excluded, group=group))), None)
    if server is None:
        raise NoHealthyServer("No healthy routing server can take the request.")
    return server


# Stand-ins in a query's parameters for the request's own values (see ``_bind``).
_EXCLUDED = object()
_GROUP = object()


def _bind(params: tuple, *, excluded: list[int], group: tuple) -> list:
    """The query's parameters with the request's excluded ids and skill group filled in."""
    values: list = []
    for value in params:
        if value is _EXCLUDED:
            values.extend(excluded)
        elif value is _GROUP:
            values.extend(group)
        else:
            values.append(value)
    return values


# Every caller's request asks this, so it is one plain query instead of the ORM's
# ``annotate(Exists(...), Count(..., filter=...))``: building that query cost more than
# running it (profiled: a quarter of ``POST /api/v1/sessions/``). Same answer, proven by
# tests/sessions/test_director_query.py against the ORM formulation. The query is a list
# of conditions a server must meet and a list of ranks that order the rest: one more rule
# (say, skip a degraded server) is one more entry in ``_eligible`` or ``_ranks``.
@lru_cache(maxsize=64)
def _director_query(excluded: int, grouped: bool) -> tuple[str, tuple]:
    conditions = _eligible(excluded)
    ranks = _ranks(grouped)
    where = " AND ".join(sql for sql, _ in conditions)
    order = ", ".join(sql for sql, _ in ranks)
    params = tuple(p for _, ps in (*conditions, *ranks) for p in ps)
    # Only table and column names from the models are formatted in; values are parameters.
    sql = f"SELECT s.* FROM {Server._meta.db_table} s WHERE {where} ORDER BY {order} LIMIT 1"  # noqa: S608
    return sql, params


Clause = tuple[str, tuple]


def _eligible(excluded: int) -> list[Clause]:
    """What a server must be to take a request at all."""
    conditions: list[Clause] = [
        ("s.role = %s", (ServerRole.ROUTING.value,)),
        ("(s.health = %s OR s.base_url = '')", (Health.UP.value,)),
        # A draining server (planned maintenance) takes no new work.
        ("s.drain_started_at IS NULL", ()),
    ]
    if excluded:
        conditions.append((f"s.id NOT IN ({', '.join(['%s'] * excluded)})", (_EXCLUDED,)))
    return conditions


def _ranks(grouped: bool) -> list[Clause]:
    """How the eligible servers are ordered, best first."""
    return [_degraded(), _availability(grouped), _open_sessions(), ("s.name", ())]


def _availability(grouped: bool) -> Clause:
    """0: the server can serve the request now (its Media Blender link is up and an
    enabled, ready agent, of the skill group if one is asked for, has a free slot);
    1: it cannot now; with a skill group asked for, 2: it has no such skill group (it
    would refuse the request: last resort only). One rank, not two, because a server that
    can serve a skill group has it: fewer subqueries for PostgreSQL to plan per request."""
    links, agents, groups = Link._meta.db_table, Agent._meta.db_table, SkillGroup._meta.db_table
    link = f"EXISTS (SELECT 1 FROM {links} l WHERE l.server_id = s.id AND l.kind = %s AND l.state = %s)"  # noqa: S608
    link_params = (PeerKind.MEDIA_BLENDER.value, LinkState.CONNECTED.value)
    ready = f"a.enabled = %s AND a.state = %s AND ({_agent_load()}) < a.max_sessions"
    ready_params = (True, AgentState.READY.value, *(state.value for state in ROUTED_STATES))
    if not grouped:
        free = f"EXISTS (SELECT 1 FROM {agents} a WHERE a.server_id = s.id AND {ready})"  # noqa: S608
        return f"CASE WHEN {link} AND {free} THEN 0 ELSE 1 END", (*link_params, *ready_params)
    through = Agent.skill_groups.through._meta
    member_agent, member_group = through.get_field("agent").column, through.get_field("skillgroup").column
    free_member = (
        f"EXISTS (SELECT 1 FROM {through.db_table} m JOIN {agents} a ON a.id = m.{member_agent} "  # noqa: S608
        f"WHERE m.{member_group} = g.id AND a.server_id = s.id AND {ready})"
    )
    # MIN over the server's matching skill groups (NULL when it has none: 2).
    best_group = (
        f"SELECT MIN(CASE WHEN {link} AND {free_member} THEN 0 ELSE 1 END) FROM {groups} g "  # noqa: S608
        "WHERE g.server_id = s.id AND (g.name = %s OR g.icm_id = %s)"
    )
    return f"COALESCE(({best_group}), 2)", (*link_params, *ready_params, _GROUP)


def _agent_load() -> str:
    """How many sessions agent ``a`` holds (in transit or active)."""
    sessions = CollaborationSession._meta.db_table
    routed = ", ".join(["%s"] * len(ROUTED_STATES))
    return f"SELECT COUNT(*) FROM {sessions} c WHERE c.agent_id = a.id AND c.state IN ({routed})"  # noqa: S608


def _open_sessions() -> Clause:
    sessions = CollaborationSession._meta.db_table
    server_fk = CollaborationSession._meta.get_field("server").column
    count = f"SELECT COUNT(*) FROM {sessions} c WHERE c.{server_fk} = s.id AND c.state <> %s"  # noqa: S608
    return f"({count})", (SessionState.ENDED.value,)


def _degraded() -> Clause:
    """0: the server keeps up; 1: it is degraded (alive but slow): a last resort."""
    return "CASE WHEN s.degraded_since IS NULL THEN 0 ELSE 1 END", ()
