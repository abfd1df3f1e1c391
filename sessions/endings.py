"""How an ended session is told to the people in it: who ended it and why, for its agent;
what happened, for its caller. One place for the wording, so every end reason has some."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import QuerySet
from django.utils import timezone

from sessions.choices import EndReason, SessionState
from sessions.models import CollaborationSession

# How long an ended session stays in its agent's "Recently ended" list, and how many
# are shown: long enough to notice one ended behind the agent's back, after a reload too.
RECENTLY_ENDED_FOR = timedelta(minutes=30)
RECENTLY_ENDED_SHOWN = 5

# Who ended a session when no person did, by reason (a person is named instead).
_ENDED_BY_SYSTEM: dict[str, str] = {
    EndReason.ADMIN_ENDED: "an administrator",
    EndReason.CALLER_LEFT: "the caller",
    EndReason.HANGUP_TIMEOUT: "the hang-up policy",
    EndReason.SERVER_FAILED: "the server's failure",
    EndReason.SERVER_MAINTENANCE: "the server's planned maintenance (its drain deadline)",
    EndReason.TRANSIT_FAILED: "the routing: the connection was not confirmed in time, too often",
    EndReason.PHONE_UNTRACKED: "the policy for sessions whose phone state is unknown",
}

# What the caller reads once the session is over (the page adds the time and a button to
# ask again). An administrator's own reason is not shown to the caller: it may be internal.
_CALLER_MESSAGES: dict[str, str] = {
    EndReason.AGENT_ENDED: "The agent ended the session.",
    EndReason.ADMIN_ENDED: "The session was ended by an administrator of the contact centre.",
    EndReason.CALLER_LEFT: "You ended the session.",
    EndReason.HANGUP_TIMEOUT: "The session ended some time after your phone call ended.",
    EndReason.SERVER_FAILED: "The server handling your session stopped working, so the session ended.",
    EndReason.SERVER_MAINTENANCE: "The server handling your session was taken down for planned maintenance, "
    "so the session ended.",
    EndReason.TRANSIT_FAILED: "We could not connect you to an agent, so the request ended.",
    EndReason.PHONE_UNTRACKED: "The session ended some time after we lost track of your phone call.",
}
_CALLER_LEFT_QUEUE = "You left the queue."
_SERVER_FAILED_QUEUED = (
    "The server handling your request stopped working before an agent was free, and no other server could take it over."
)


@dataclass(frozen=True)
class Ending:
    """One ended session as its agent's desktop tells it."""

    session: CollaborationSession
    by: str  # who: "you", "an administrator (Dana Admin)", "the caller", ...
    why: str  # the note given, or ""
    by_someone_else: bool  # not ended by the agent itself: worth telling out loud


def ended_by(session: CollaborationSession, *, viewer_user_id: int | None = None) -> Ending:
    """Who ended ``session`` and why, as its agent (the user ``viewer_user_id``) reads it."""
    user = session.ended_by
    # The list shows the agent's own sessions: "agent ended" was the viewer, whoever
    # recorded it (an agent's end through the API or the desktop names it too).
    if session.end_reason == EndReason.AGENT_ENDED or (user is not None and user.pk == viewer_user_id):
        by = "you"
    elif user is not None:
        name = user.get_full_name() or user.get_username()
        by = f"an administrator ({name})" if session.end_reason == EndReason.ADMIN_ENDED else name
    else:
        by = _ENDED_BY_SYSTEM.get(session.end_reason, "the system")
    return Ending(session=session, by=by, why=session.end_note, by_someone_else=by != "you")


def recently_ended(agent_id: int, *, viewer_user_id: int | None) -> list[Ending]:
    """The agent's sessions ended in the last ``RECENTLY_ENDED_FOR``, newest first (one query)."""
    since = timezone.now() - RECENTLY_ENDED_FOR
    sessions: QuerySet[CollaborationSession] = (
        CollaborationSession.objects.filter(agent_id=agent_id, state=SessionState.ENDED, ended_at__gte=since)
        .select_related("ended_by")
        .order_by("-ended_at", "-pk")[:RECENTLY_ENDED_SHOWN]
    )
    return [ended_by(session, viewer_user_id=viewer_user_id) for session in sessions]


def caller_message(session: CollaborationSession) -> str:
    """What the caller's page says of an ended session."""
    never_connected = session.activated_at is None
    if session.end_reason == EndReason.CALLER_LEFT and never_connected:
        return _CALLER_LEFT_QUEUE
    if session.end_reason == EndReason.SERVER_FAILED and session.agent_id is None:
        return _SERVER_FAILED_QUEUED
    return _CALLER_MESSAGES.get(session.end_reason, "The session has ended.")
