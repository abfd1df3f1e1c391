"""Events pushed by peers over the held connections, handed to the services that own them."""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import sync_to_async

from failover.choices import IcmSide, PeerKind
from failover.monitor.targets import PeerTarget
from failover.peering.protocol import Message

log = logging.getLogger(__name__)
_pending: set[asyncio.Task[None]] = set()


def dispatch_peer_event(target: PeerTarget, message: Message) -> None:
    """Called on the monitor's event loop for every pushed event; must not block."""
    event = message.get("event")
    if target.kind == PeerKind.MEDIA_BLENDER and event == "icm_side_changed":
        task = asyncio.create_task(_record_icm_side(target.id, message.get("side")))
        _pending.add(task)  # keep a reference until done, or the task may be collected
        task.add_done_callback(_pending.discard)


async def _record_icm_side(peer_id: int, side: object) -> None:
    from failover.services.peers import peer_record_icm_side

    value = side if side in (IcmSide.A, IcmSide.B) else IcmSide.NONE
    try:
        await sync_to_async(peer_record_icm_side)(peer_id=peer_id, side=value)
    except Exception:
        log.exception("could not record the Media Blender's ICM side")
