"""What must happen after a session, agent or link change commits: talk to the Media
Blender, drain the queue. Called by the services inside their transaction; everything here
is scheduled with ``transaction.on_commit`` so nothing is sent for a rolled-back change
(side effects only after the commit). The Media Blender conversation itself lives in
``sessions.media_blender_client`` and runs in Celery tasks (``sessions.tasks``, sent by
name through ``common.outbox``), never in the caller's transaction.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.db import transaction

from common.outbox import send_now, send_on_commit
from failover.choices import PeerKind
from sessions.choices import ROUTED_STATES
from sessions.services.drain_schedule import drain_schedule_wanted

if TYPE_CHECKING:
    from failover.models import Link, Peer
    from sessions.models import Agent, CollaborationSession

log = logging.getLogger(__name__)


def after_session_requested(session: CollaborationSession) -> None:
    """A new session is queued: try to route the server's queue, unless a drain of that
    queue is already on its way (``drain_schedule_wanted``: one task, not one per caller)."""
    server_id = session.server_id

    def send() -> None:
        if drain_schedule_wanted(server_id):
            send_now("sessions.drain_queue", server_id)

    transaction.on_commit(send)


def after_session_ended(session: CollaborationSession, *, previous_state: str) -> None:
    """Release the Media Blender route of a routed session and re-sync its agent (a slot is
    free, or a logged-out agent can now be forgotten); each task then drains the queue."""
    if previous_state not in ROUTED_STATES:
        return
    send_on_commit("sessions.release_route", str(session.pk), session.server_id)
    if session.agent_id:
        send_on_commit("sessions.sync_agent", session.agent_id)


def after_session_requeued(session: CollaborationSession, *, previous_agent_id: int | None) -> None:
    """Release the abandoned route, give its agent the slot back at the MB, drain the queue."""
    send_on_commit("sessions.release_route", str(session.pk), session.server_id)
    if previous_agent_id:
        send_on_commit("sessions.sync_agent", previous_agent_id)


def after_agent_changed(agent: Agent) -> None:
    """Tell the connected Media Blender the agent's new state; a ready agent may take work."""
    send_on_commit("sessions.sync_agent", agent.pk)


def after_link_switched(link: Link, *, connected: Peer | None) -> None:
    """A Media Blender link has a newly connected peer (switchover or restore): re-register
    the agents with it, re-ask it for the sessions in transit, drain the queue. Other links,
    and a link that went down, need nothing here."""
    if link.kind == PeerKind.MEDIA_BLENDER and connected is not None:
        send_on_commit("sessions.after_media_blender_switchover", link.pk, link.epoch)
