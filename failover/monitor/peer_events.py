"""Events pushed by peers over the held connections, handed to the services that own them.

The monitor holds a subscribed connection to every peer, the standby too, so each event
arrives with the peer it came from; the services decide whether that peer's word counts
(only the connected Media Blender may confirm a route). Handlers run as fire-and-forget
tasks on the monitor's loop and reach the database through ``sync_to_async``, so a slow
write never delays probes.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from typing import Any

from asgiref.sync import sync_to_async

from failover import hooks
from failover.choices import IcmSide, PeerKind
from failover.monitor.targets import PeerTarget
from failover.peering.client import Message
from failover.services.peers import peer_record_icm_side

log = logging.getLogger(__name__)
_pending: set[asyncio.Task[None]] = set()

# ``route_confirmed`` leaves the MB ~20 ms after its answer to ``route``, and may overtake
# the commit that records that answer. Such an early event is tried again after these
# pauses (seconds) before it is dropped; the transit timeout covers a route never confirmed.
CONFIRM_RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0)
# Confirmations recorded in one transaction at most.
CONFIRM_BATCH = 200


def dispatch_peer_event(target: PeerTarget, message: Message) -> None:
    """Called on the monitor's event loop for every pushed event; must not block."""
    if target.kind != PeerKind.MEDIA_BLENDER:
        return
    event = message.get("event")
    # ``icm_status``: the side read as the connection opened (PeerWatcher._read_status).
    if event in ("icm_side_changed", "icm_status"):
        _spawn(_record_icm_side(target.id, message.get("side")))
    elif event == "route_confirmed":
        _confirm_route(target.id, message.get("session_id"), message.get("agent_id"))
    elif event == "phone_hung_up":
        _spawn(_record_phone_hung_up(target.id, message.get("session_id"), message.get("agent_id")))


def _spawn(coroutine: Coroutine[Any, Any, None]) -> None:
    task = asyncio.create_task(coroutine)
    _pending.add(task)  # keep a reference until done, or the task may be collected
    task.add_done_callback(_pending.discard)


async def _record_icm_side(peer_id: int, side: object) -> None:
    value = side if side in (IcmSide.A, IcmSide.B) else IcmSide.NONE
    try:
        await sync_to_async(peer_record_icm_side)(peer_id=peer_id, side=value)
    except Exception:
        log.exception("could not record the Media Blender's ICM side")


@dataclass(frozen=True)
class _Confirmation:
    peer_id: int
    session_id: str
    agent_id: str
    attempt: int = 0


class _ConfirmBatcher:
    """Records ``route_confirmed`` events in batches, one transaction for those that
    arrived while the previous batch was being written (after a switchover's drain, a
    thousand in a second: a transaction each would hold SQLite's one writer lock for most
    of it). One per event loop; an early event is put back after its retry pause."""

    def __init__(self) -> None:
        self.queue: list[_Confirmation] = []
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def add(self, confirmation: _Confirmation) -> None:
        self.queue.append(confirmation)
        self.wake.set()
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.queue:
                batch, self.queue = self.queue[:CONFIRM_BATCH], self.queue[CONFIRM_BATCH:]
                await self._record(batch)

    async def _record(self, batch: list[_Confirmation]) -> None:
        try:
            outcomes = await sync_to_async(hooks.routes_confirmed)(
                [(c.session_id, c.agent_id, c.peer_id) for c in batch]
            )
        except Exception:
            log.exception("could not record %s route confirmations", len(batch))
            return
        loop = asyncio.get_running_loop()
        for confirmation, outcome in zip(batch, outcomes, strict=True):
            if outcome != hooks.CONFIRMATION_EARLY:
                continue
            if confirmation.attempt < len(CONFIRM_RETRY_DELAYS):
                retry = replace(confirmation, attempt=confirmation.attempt + 1)
                loop.call_later(CONFIRM_RETRY_DELAYS[confirmation.attempt], self.add, retry)
            else:
                log.info(
                    "route confirmation for session %s from peer %s dropped: not in transit",
                    confirmation.session_id,
                    confirmation.peer_id,
                )


_batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _ConfirmBatcher] = weakref.WeakKeyDictionary()


def _confirm_route(peer_id: int, session_id: object, agent_id: object) -> None:
    if not isinstance(session_id, str) or not isinstance(agent_id, str):
        return
    loop = asyncio.get_running_loop()
    batcher = _batchers.get(loop)
    if batcher is None:
        batcher = _batchers[loop] = _ConfirmBatcher()
    batcher.add(_Confirmation(peer_id, session_id, agent_id))


async def _record_phone_hung_up(peer_id: int, session_id: object, agent_id: object) -> None:
    if not isinstance(session_id, str):
        return
    try:
        await sync_to_async(hooks.phone_hung_up)(
            session_id=session_id, peer_id=peer_id, agent_icm_id=agent_id if isinstance(agent_id, str) else None
        )
    except Exception:
        log.exception("could not record a phone hang-up", extra={"session": session_id})
