"""The sessions open on a server when a failure strikes, kept with the failure's event.

The failover engine calls ``work_at_failure`` (failover/hooks.py) inside the failure's
transaction, before the failure ends or moves anything, and records the snapshot once the
event exists: the incident report can then say which sessions were active, in transit and
queued at that moment, whatever has happened to them since.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from failover.models import FailoverEvent, Server
from sessions.choices import SessionState
from sessions.models import CollaborationSession, IncidentSession

# Rows written per INSERT: a server with a long queue is snapshotted in a few statements.
BATCH_SIZE = 1000


@dataclass(frozen=True)
class OpenSessions:
    rows: list[dict[str, Any]]

    def record(self, event: FailoverEvent) -> None:
        IncidentSession.objects.bulk_create(
            [
                IncidentSession(
                    event=event,
                    session_id=row["id"],
                    state=row["state"],
                    agent_id=row["agent_id"],
                    agent_name=_agent_name(row),
                    route_epoch=row["route_epoch"],
                )
                for row in self.rows
            ],
            batch_size=BATCH_SIZE,
        )


def _agent_name(row: dict[str, Any]) -> str:
    full = f"{row['agent__user__first_name'] or ''} {row['agent__user__last_name'] or ''}".strip()
    return (full or row["agent__user__username"] or "")[:150]


def open_sessions_at_failure(*, server: Server) -> OpenSessions:
    """The server's open sessions as they are now (one query, values only)."""
    rows = (
        CollaborationSession.objects.filter(server=server)
        .exclude(state=SessionState.ENDED)
        .order_by("queued_at")
        .values(
            "id",
            "state",
            "agent_id",
            "route_epoch",
            "agent__user__username",
            "agent__user__first_name",
            "agent__user__last_name",
        )
    )
    return OpenSessions(rows=list(rows))
