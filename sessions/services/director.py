"""The built-in Local Director: which routing server takes a new request."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count, Q

from failover.choices import Health, ServerRole
from failover.models import Server
from sessions.choices import SessionState

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
    server = (
        Server.objects.filter(role=ServerRole.ROUTING)
        .filter(Q(health=Health.UP) | Q(base_url=""))
        .exclude(pk__in=list(exclude_ids))
        .annotate(load=Count("sessions", filter=~Q(sessions__state=SessionState.ENDED)))
        .order_by("load", "name")
        .first()
    )
    if server is None:
        raise NoHealthyServer("No healthy routing server can take the request.")
    return server
