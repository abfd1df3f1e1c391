"""The built-in Local Director: which routing server takes a new request."""

from __future__ import annotations

from collections.abc import Iterable

from failover.choices import Health, ServerRole
from failover.models import Server
from sessions.choices import SessionState
from sessions.models import CollaborationSession

# What a 503 tells callers and load balancers: the monitor re-probes every second, so a
# recovered server is back within a few seconds.
RETRY_AFTER_SECONDS = 5


class NoHealthyServer(Exception):
    """No routing server can take a new request right now."""

    retry_after = RETRY_AFTER_SECONDS


def choose_server(*, exclude_ids: Iterable[int] = ()) -> Server:
    """The least-loaded healthy routing server (fewest open sessions, then by name).

    A server without ``base_url`` is not monitored and counts as healthy (a single-node
    install); a monitored one must be up. Raises ``NoHealthyServer`` when none qualifies.
    """
    excluded = [int(pk) for pk in exclude_ids]
    params = [ServerRole.ROUTING.value, Health.UP.value, *excluded, SessionState.ENDED.value]
    server = next(iter(Server.objects.raw(_least_loaded_sql(len(excluded)), params)), None)
    if server is None:
        raise NoHealthyServer("No healthy routing server can take the request.")
    return server


# Every caller's request asks this, so it is one plain query instead of the ORM's
# ``annotate(Count(..., filter=...))``: building that query cost more than running it
# (profiled: a quarter of ``POST /api/v1/sessions/``). Same answer, proven by
# tests/sessions/test_director_query.py against the ORM formulation.
def _least_loaded_sql(excluded: int) -> str:
    server_table = Server._meta.db_table
    session_table = CollaborationSession._meta.db_table
    server_fk = CollaborationSession._meta.get_field("server").column
    exclude = f"AND s.id NOT IN ({', '.join(['%s'] * excluded)})" if excluded else ""
    # Only table and column names from the models are formatted in; values are parameters.
    return f"""
        SELECT s.* FROM {server_table} s
        WHERE s.role = %s AND (s.health = %s OR s.base_url = '') {exclude}
        ORDER BY (
            SELECT COUNT(*) FROM {session_table} c WHERE c.{server_fk} = s.id AND c.state <> %s
        ), s.name
        LIMIT 1
    """  # noqa: S608
